import type { Config } from '../lib/config';
import type { BrokerSecrets } from '../adapters/secrets';
import type { Db } from '../db/pool';
import type { Mailer } from '../adapters/ses-mailer';
import type { STSClient } from '@aws-sdk/client-sts';
import type { OidcKeyStore } from '../adapters/oidc-keys';
import type { GoogleOidc } from '../adapters/google-oidc';

/** What activities need from the outside world; tests pass their own. */
export interface ActivityDeps {
  config: Config;
  db: Db;
  secrets: BrokerSecrets;
  mailer: Mailer;
  /** Milliseconds since the epoch; tests may shift it. */
  now: () => number;
  /** The OIDC signing keyset (mint activities); default: OidcKeyStore.fromConfig(config). */
  oidcKeys?: OidcKeyStore;
  /** STS client for mint-aws-creds; default: createStsClient(config). */
  stsClient?: STSClient;
  /** The Google relying party (Google login activities); default: new GoogleOidc(config). */
  googleOidc?: GoogleOidc;
}
