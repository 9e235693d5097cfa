/**
 * The registry of login methods: one entry per way to sign in (docs/login-methods.md). It is pure
 * data, so every layer can read it — the workflow bundle included — and each layer derives its
 * part from it instead of keeping a list of its own:
 *
 * - the session's `amr` (`LoginMethod`, lib/session-token.ts) is the union of `sessionMethods`;
 * - the flow's Temporal metadata (`FLOW_METADATA`, lib/flow-metadata.ts) and its `AkFlow` value;
 * - the `flow` label of broker_login_requests_total (lib/metrics.ts, api/login-methods.ts);
 * - the per-layer tables typed `Record<LoginMethodId, …>` — routes (api/login-methods.ts),
 *   activities (activities/index.ts), history recording (test/record-histories.ts) — which the
 *   compiler refuses while one lacks the new id, and the workflow export (workflows/index.ts),
 *   which test/login-methods.test.ts checks against `workflowType`.
 *
 * The shape follows a login strategy registry (ory/kratos selfservice/flow/login/strategy.go, one
 * strategy per method registered in one list, driver/registry_default.go); here the list is typed,
 * so a method registered in one layer and forgotten in another does not compile.
 */
import type { FlowMetadata } from './flow-metadata';
import type { Identity } from './omni';

export interface LoginMethodSpec {
  /** The values of the session token's `amr` this method issues (several when it has variants, as SIWE). */
  readonly sessionMethods: readonly string[];
  /**
   * Those of its `sessionMethods` whose login a browser other than the client's completed (the
   * device flow, a Google sign-in started from a CLI): whoever holds the client's secret gets the
   * session of whoever finished it, so it never counts as a recent login made here
   * (services/sessions.ts requireRecentLogin).
   */
  readonly completedElsewhere?: readonly string[];
  /** Its workflow's AkFlow search attribute and FLOW_METADATA key. */
  readonly flow: string;
  /** Its workflow type, as exported by workflows/index.ts. */
  readonly workflowType: string;
  /** The Temporal Web UI's summary and details of its runs: fixed words only. */
  readonly metadata: FlowMetadata;
}

export const LOGIN_METHODS = {
  email: {
    sessionMethods: ['email'],
    flow: 'email_login',
    workflowType: 'emailCodeLoginWorkflow',
    metadata: {
      staticSummary: 'Email code login',
      staticDetails: 'Sends a one-time code by email and checks what the person types. Stages: started → code_sent → verifying → done (or locked).',
    },
  },
  wallet: {
    sessionMethods: ['wallet', 'siwe'],
    flow: 'wallet_login',
    workflowType: 'walletLoginWorkflow',
    metadata: {
      staticSummary: 'Wallet login (signed challenge)',
      staticDetails: 'Issues a sign-in challenge and verifies the wallet signature. Stages: started → challenge_issued → verifying → completing → done.',
    },
  },
  google: {
    // google_cli: the CLI form, handed to the poll secret's holder (api/routes/google-login.ts).
    sessionMethods: ['google', 'google_cli'],
    completedElsewhere: ['google_cli'],
    flow: 'google_login',
    workflowType: 'googleLoginWorkflow',
    metadata: {
      staticSummary: 'Google login',
      staticDetails:
        "Waits for Google's callback, then for the client to collect its session. Stages: waiting_callback → exchanging → signed_in → done (or failed).",
    },
  },
  tee: {
    sessionMethods: ['tee'],
    flow: 'tee_account',
    workflowType: 'teeAccountWorkflow',
    metadata: {
      staticSummary: 'TEE account bookkeeping',
      staticDetails:
        "Records the Heima TEE worker's login and wallet callbacks for one account, one at a time. Stages: started → login_recorded / wallet_recorded → done (idle).",
    },
  },
  device: {
    sessionMethods: ['device'],
    completedElsewhere: ['device'],
    flow: 'device_authorization',
    workflowType: 'deviceAuthorizationWorkflow',
    metadata: {
      staticSummary: 'Device authorization (RFC 8628)',
      staticDetails:
        'Holds a device code until a signed-in person approves or denies it, then hands the device its session once. Stages: waiting_decision → approving → approved → done (or denied, expired).',
    },
  },
  passkey: {
    sessionMethods: ['passkey'],
    flow: 'passkey_ceremony',
    workflowType: 'passkeyCeremonyWorkflow',
    metadata: {
      staticSummary: 'Passkey ceremony (WebAuthn)',
      staticDetails:
        'Holds one WebAuthn challenge (registration, sign-up or login) until its response is verified once or it expires. Stages: challenge_issued → verifying → completing → done; outcome succeeded, refused or expired.',
    },
  },
} as const satisfies Record<string, LoginMethodSpec>;

/** A registry key: the method's folder-level name and its metrics `flow` label. */
export type LoginMethodId = keyof typeof LOGIN_METHODS;

/** How a session was obtained: the token's `amr` claim and the sessions row's `method`. */
export type LoginMethod = (typeof LOGIN_METHODS)[LoginMethodId]['sessionMethods'][number];

/** The AkFlow values (and FLOW_METADATA keys) of the login methods. */
export type LoginFlow = (typeof LOGIN_METHODS)[LoginMethodId]['flow'];

export const LOGIN_METHOD_IDS = Object.keys(LOGIN_METHODS) as LoginMethodId[];

/** Every session method any login issues. */
export const SESSION_METHODS: readonly LoginMethod[] = LOGIN_METHOD_IDS.flatMap((id) => LOGIN_METHODS[id].sessionMethods);

/** The session methods whose login another browser completed: never a recent login made here. */
export const COMPLETED_ELSEWHERE_METHODS: readonly string[] = LOGIN_METHOD_IDS.flatMap((id) => {
  const spec: LoginMethodSpec = LOGIN_METHODS[id];
  return spec.completedElsewhere ?? [];
});

/**
 * What a login flow returns: the session as recorded (its jti, times and account), not a token.
 * The API signs the bearer from it after the flow returns (api/session-issue.ts), so no history
 * holds a usable session token.
 */
export interface LoginOutcome {
  jti: string;
  method: LoginMethod;
  /** The EVM address that signed in (wallet logins), lower-case. */
  wallet?: string;
  /** Unix seconds; the token's iat. */
  issued_at: number;
  /** Unix seconds; the token's exp and the session row's expiry. */
  expires_at: number;
  omni_account: string;
  /**
   * The account's keyed tag (lib/digest.ts accountTag), what Temporal lists the flow under; set
   * by the workflow logins' completion from 1.3.0 on, absent from the API's stateless login.
   */
  account_tag?: string;
  user_id: string;
  identity: Identity;
}
