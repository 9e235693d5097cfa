import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createEmailLoginActivities, type SendEmailLoginCodeInput } from '../activities/email-login';
import { SesMailer } from '../adapters/ses-mailer';
import { migrate } from '../db/migrate';
import { createPool, type Db } from '../db/pool';
import { startSesFixture, type SesFixture } from '../fixtures/ses';
import { emailCodeDigest } from '../lib/email-login-code';
import { loadConfig } from '../lib/config';
import { resolveSecrets, type BrokerSecrets } from '../adapters/secrets';
import { FailureType } from '../workflows/definitions';
import { codeFromMail, uniqueEmail } from './email-login-client';
import { createTestDatabase } from './harness';

/**
 * The send activities against a real Postgres and the SES stand-in, run in an activity context
 * whose workflow id and run id the test chooses: what a retry mails, and what no other dispatch shares.
 */

const PER_HOUR = 5; // the "five codes" case below mails one address five times
let db: Db;
let ses: SesFixture;
let mailer: SesMailer;
let secrets: BrokerSecrets;
let activities: ReturnType<typeof createEmailLoginActivities>;
let cleanup: (() => Promise<void>)[] = [];

before(async () => {
  const database = await createTestDatabase();
  const dataDir = await mkdtemp(join(tmpdir(), 'akb-email-activity-'));
  const config = loadConfig({
    NODE_ENV: 'test',
    BROKER_DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    BROKER_RATE_LIMIT_EMAIL_PER_HOUR: String(PER_HOUR),
    BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: String(PER_HOUR),
    BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0',
  });
  secrets = await resolveSecrets(config);
  db = createPool(database.url, 4);
  await migrate(db);
  ses = await startSesFixture();
  mailer = new SesMailer(config.BROKER_EMAIL_FROM, { region: config.AWS_REGION, endpoint: ses.url });
  activities = createEmailLoginActivities({ config, db, secrets, mailer, now: Date.now });
  cleanup = [() => ses.close(), async () => mailer.destroy(), () => db.end(), database.drop, () => rm(dataDir, { recursive: true, force: true })];
});
after(async () => {
  for (const fn of cleanup) await fn().catch(() => undefined);
});

const hex32 = (n: number) => n.toString(16).padStart(32, '0');
/** One requester network for every send here (the keyed digest the API would pass). */
const NETWORK = 'ab'.repeat(16);
/** Runs the per-requester send as activity attempt `attempt` of the given run. */
type Sent = { codeDigest: string; sentAtMs: number };
function send(run: { workflowId: string; runId: string }, input: { email: string; dispatch: number; salt: string }, attempt = 1): Promise<Sent> {
  const env = new MockActivityEnvironment({ workflowExecution: run, attempt, isLocal: true });
  return env.run((i: SendEmailLoginCodeInput) => activities.sendEmailLoginCode(i), { networkKey: NETWORK, ...input, ttlSeconds: 600 });
}
const codesTo = (email: string) => ses.mailTo(email.toLowerCase()).map((m) => codeFromMail(m.text));
const ledgerRows = async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM email_sends')).rows[0]?.n ?? -1;

void describe('email code send activities', () => {
  void test('a retried dispatch mails the same code and counts once in the address budget', async () => {
    const email = uniqueEmail('Retry').toLowerCase();
    const run = { workflowId: `email-login/${hex32(1)}`, runId: 'run-a' };
    const input = { email, dispatch: 1, salt: 'aa'.repeat(16) };
    const rows = await ledgerRows();
    const t0 = Date.now();
    const first = await send(run, input, 1);
    // The mail went out but the attempt's answer was lost: Temporal runs attempt 2.
    await new Promise((r) => setTimeout(r, 20));
    const second = await send(run, input, 2);
    // The cooldown counts from the reservation: the flow's resend_after is computed from this.
    assert.ok(first.sentAtMs >= t0 && first.sentAtMs <= Date.now(), 'sentAtMs is when the send was reserved');
    assert.equal(second.sentAtMs, first.sentAtMs, 'a retry reports the first reservation, not its own time');
    const [newest, oldest] = codesTo(email);
    assert.ok(newest && oldest);
    assert.equal(newest, oldest, 'the retry mailed the same code');
    assert.equal(second.codeDigest, first.codeDigest);
    assert.equal(first.codeDigest, emailCodeDigest(secrets.hmacSecret, run.workflowId, oldest), 'only the keyed digest of the mailed code is returned');
    assert.equal(await ledgerRows(), rows + 1, 'one reservation for one dispatch');
  });

  void test('no other dispatch, run, salt or flow shares a code', async () => {
    const email = uniqueEmail('Fresh').toLowerCase();
    const base = { workflowId: `email-login/${hex32(2)}`, runId: 'run-a' };
    const salt = 'bb'.repeat(16);
    const before = ses.messages().length;
    await send(base, { email, dispatch: 1, salt });
    await send(base, { email, dispatch: 2, salt }); // a resend
    await send({ ...base, runId: 'run-b' }, { email, dispatch: 1, salt }); // another run of the same workflow id
    await send(base, { email, dispatch: 3, salt: 'cc'.repeat(16) }); // another salt
    await send({ workflowId: `email-login/${hex32(3)}`, runId: 'run-a' }, { email, dispatch: 1, salt }); // another flow
    const codes = ses
      .messages()
      .slice(0, ses.messages().length - before)
      .map((m) => codeFromMail(m.text));
    assert.equal(codes.length, 5);
    assert.equal(new Set(codes).size, 5, `five dispatches, five codes: ${codes.join(' ')}`);
  });

  void test('a spent address budget refuses before mailing: non-retryable RateLimited with retry_after', async () => {
    const email = uniqueEmail('Spent').toLowerCase();
    const run = { workflowId: `email-login/${hex32(4)}`, runId: 'run-a' };
    for (let d = 1; d <= PER_HOUR; d++) await send(run, { email, dispatch: d, salt: 'dd'.repeat(16) });
    const sent = ses.requestCount();
    const refused = await send(run, { email, dispatch: PER_HOUR + 1, salt: 'dd'.repeat(16) }).then(
      () => assert.fail('sent past the budget'),
      (e: unknown) => e,
    );
    assert.ok(refused instanceof ApplicationFailure, String(refused));
    assert.equal(refused.type, FailureType.rateLimited);
    assert.equal(refused.nonRetryable, true);
    const retryAfter = (refused.details?.[0] as { retry_after?: number } | undefined)?.retry_after ?? 0;
    assert.ok(retryAfter > 3500 && retryAfter <= 3600, `retry_after ${retryAfter}`);
    assert.equal(ses.requestCount(), sent, 'nothing mailed');
    // A retry of a dispatch that was reserved before the budget ran out still goes out (same code).
    await send(run, { email, dispatch: PER_HOUR, salt: 'dd'.repeat(16) }, 2);
    const [newest, previous] = codesTo(email);
    assert.equal(newest, previous);
  });
});
