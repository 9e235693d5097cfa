import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HANG_CALLS, hangProblems, type HangAnswer, type HungPart } from '../scripts/cluster/hang-verdict';

/** The answers of a broker that meets the rule while `part` hangs. */
function goodAnswers(part: HungPart): HangAnswer[] {
  const unavailable = { status: 503, error: 'unavailable', retryAfter: '1', ms: 1550 };
  return [
    part === 'temporal' ? { call: HANG_CALLS.me, status: 200, ms: 20 } : { call: HANG_CALLS.me, ...unavailable },
    { call: HANG_CALLS.emailCode, ...unavailable },
    { call: HANG_CALLS.mint, ...unavailable },
    { call: HANG_CALLS.readyz, status: 503, ms: 1510, partsDown: [part] },
  ];
}

const replace = (answers: HangAnswer[], call: string, change: Partial<HangAnswer>): HangAnswer[] =>
  answers.map((a) => (a.call === call ? { ...a, ...change } : a));

void describe('the fault test’s verdict on the answers while a dependency hangs', () => {
  void test('503 unavailable with Retry-After within 2 s, /me 200 while only Temporal hangs, /readyz naming the part: met', () => {
    assert.deepEqual(hangProblems('database', goodAnswers('database')), []);
    assert.deepEqual(hangProblems('temporal', goodAnswers('temporal')), []);
  });

  void test('an answer at 2 s or later, or none, is not met (the measured 30-s hang of before)', () => {
    assert.match(hangProblems('database', replace(goodAnswers('database'), HANG_CALLS.mint, { ms: 2000 })).join('\n'), /mint-oidc-jwt: answered after 2\.00 s/);
    const none = hangProblems('temporal', replace(goodAnswers('temporal'), HANG_CALLS.emailCode, { status: 0, failure: 'timeout', ms: 30_000 }));
    assert.match(none.join('\n'), /email_code: timeout, expected 503/);
  });

  void test('the wrong status or kind, a missing Retry-After, /readyz naming another part or a call not made: not met', () => {
    assert.match(hangProblems('database', replace(goodAnswers('database'), HANG_CALLS.me, { status: 500, error: 'internal' })).join(), /expected 503/);
    assert.match(hangProblems('temporal', replace(goodAnswers('temporal'), HANG_CALLS.me, { status: 503, error: 'unavailable' })).join(), /expected 200/);
    assert.match(hangProblems('database', replace(goodAnswers('database'), HANG_CALLS.mint, { error: 'internal' })).join(), /expected unavailable/);
    assert.match(hangProblems('database', replace(goodAnswers('database'), HANG_CALLS.emailCode, { retryAfter: undefined })).join(), /no Retry-After/);
    assert.match(hangProblems('temporal', replace(goodAnswers('temporal'), HANG_CALLS.readyz, { partsDown: ['database'] })).join(), /does not name temporal/);
    assert.match(hangProblems('database', goodAnswers('database').slice(1)).join(), /session\/me: not called/);
  });
});
