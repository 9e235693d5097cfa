/** A passkey as the wire shows it (GET /v1/passkeys, a registration's answer). Pure data: the workflow bundle reads it too. */
export interface PasskeyView {
  /** The credential id, base64url. */
  id: string;
  name: string;
  /** Unix seconds. */
  created_at: number;
  last_used_at: number | null;
  backup_eligible: boolean;
  backed_up: boolean;
  transports: string[];
  aaguid: string;
}
