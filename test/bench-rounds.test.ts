import assert from 'node:assert/strict';
import { test } from 'node:test';
import { roundsSummary } from '../scripts/bench/rounds';

void test('bench --rounds: per flow and concurrency the median ratio to its round ceiling and the range; the references left out', () => {
  const rows = [
    { step: 'ceiling: empty workflow', concurrency: 16 },
    { step: 'mint-oidc-jwt', concurrency: 16, full_ceiling: 0.78, p50_ceiling: 1.3 },
    { step: 'mint-oidc-jwt', concurrency: 1, full_ceiling: 0.6, p50_ceiling: 1.77 },
    { step: 'mint-oidc-jwt', concurrency: 16, full_ceiling: 0.66, p50_ceiling: 1.5 },
    { step: 'mint-oidc-jwt', concurrency: 1, full_ceiling: 0.69, p50_ceiling: 1.47 },
    { step: 'mint-oidc-jwt', concurrency: 16, full_ceiling: 0.71, p50_ceiling: 1.4 },
  ];
  assert.deepEqual(roundsSummary(rows), [
    "[bench] c=16 mint-oidc-jwt over 3 rounds: rate 0.71 of the ceiling's (0.66–0.78), p50 1.40× (1.30–1.50)",
    "[bench] c=1 mint-oidc-jwt over 2 rounds: rate 0.65 of the ceiling's (0.60–0.69), p50 1.62× (1.47–1.77)",
  ]);
});
