import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultClusterDatabaseUrl, defaultClusterTemporalDatabaseUrl } from '../scripts/cluster/layout';
import { parseTemporalDbUrl } from '../scripts/cluster/temporal-nodes';

void test('npm run cluster keeps Temporal state per data directory, as it keeps the broker database', () => {
  const a = parseTemporalDbUrl(defaultClusterTemporalDatabaseUrl('/srv/a/.data'));
  const b = parseTemporalDbUrl(defaultClusterTemporalDatabaseUrl('/srv/b/.data'));
  assert.notEqual(a.database, b.database, 'two data directories never share a Temporal store');
  assert.notEqual(a.visibilityDatabase, b.visibilityDatabase);
  assert.equal(parseTemporalDbUrl(defaultClusterTemporalDatabaseUrl('/srv/a/.data')).database, a.database, 'a restart on the same directory finds its state');
  // The same directory's broker database carries the same tag.
  const tag = /agentkeys_temporal_([0-9a-f]{10})$/.exec(a.database)?.[1];
  assert.ok(tag, a.database);
  assert.ok(defaultClusterDatabaseUrl('/srv/a/.data').endsWith(`agentkeys_cluster_${tag}`));
});
