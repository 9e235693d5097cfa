/**
 * Temporal user metadata of each broker workflow: the one-line summary the Web UI's list shows
 * and the details its workflow page shows. Fixed words only — never an email, a wallet address,
 * an account, a code or a token — so the list is readable to anyone who may see the workflow. The
 * run's current stage and outcome follow as its current details (workflows/progress.ts) and in
 * the AkStage / AkOutcome search attributes.
 */
export interface FlowMetadata {
  staticSummary: string;
  staticDetails: string;
}

export const FLOW_METADATA = {
  email_login: {
    staticSummary: 'Email code login',
    staticDetails: 'Sends a one-time code by email and checks what the person types. Stages: started → code_sent → verifying → done (or locked).',
  },
  wallet_login: {
    staticSummary: 'Wallet login (signed challenge)',
    staticDetails: 'Issues a sign-in challenge and verifies the wallet signature. Stages: started → challenge_issued → verifying → completing → done.',
  },
  google_login: {
    staticSummary: 'Google login',
    staticDetails:
      "Waits for Google's callback, then for the client to collect its session. Stages: waiting_callback → exchanging → signed_in → done (or failed).",
  },
  tee_account: {
    staticSummary: 'TEE account bookkeeping',
    staticDetails:
      "Records the Heima TEE worker's login and wallet callbacks for one account, one at a time. Stages: started → login_recorded / wallet_recorded → done (idle).",
  },
  device_authorization: {
    staticSummary: 'Device authorization (RFC 8628)',
    staticDetails:
      'Holds a device code until a signed-in person approves or denies it, then hands the device its session once. Stages: waiting_decision → approving → approved → done (or denied, expired).',
  },
  mint_oidc_jwt: {
    staticSummary: 'Mint: OIDC JWT',
    staticDetails: 'Authorises the caller, audits the intent, signs an OIDC JWT for STS and audits the outcome. Stages: started → minting → done.',
  },
  mint_aws_creds: {
    staticSummary: 'Mint: AWS credentials',
    staticDetails: 'Authorises the caller, audits the intent, assumes the data role through STS and audits the outcome. Stages: started → minting → done.',
  },
  maintenance: {
    staticSummary: 'Maintenance: purge expired rows',
    staticDetails: 'Hourly Schedule: drops expired replay-guard and session rows.',
  },
  audit_anchor: {
    staticSummary: 'Audit anchor: sign the chain head',
    staticDetails: "Schedule: signs the audit chain's newest head with the audit key.",
  },
} as const satisfies Record<string, FlowMetadata>;
