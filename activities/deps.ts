import type { Config } from '../lib/config';
import type { BrokerSecrets } from '../lib/secrets';
import type { Db } from '../db/pool';
import type { Mailer } from './ses-mailer';

/** What activities need from the outside world; tests pass their own. */
export interface ActivityDeps {
  config: Config;
  db: Db;
  secrets: BrokerSecrets;
  mailer: Mailer;
  /** Milliseconds since the epoch; tests may shift it. */
  now: () => number;
}
