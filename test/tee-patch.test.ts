import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { PATCHED_TOKEN_AUDIENCES, UPSTREAM_TOKEN_AUDIENCES } from '../fixtures/tee/server';

/**
 * The Phase 0 patch (tee-patch/) applies cleanly to the upstream files it was cut against, as
 * stored verbatim in tee-patch/upstream/ (litentry/heima, commits named in tee-patch/README.md),
 * and says what the dev TEE fixture does.
 */

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const PATCH = join(ROOT, 'tee-patch', 'agentkeys-phase0.patch');
const OE = 'tee-worker/omni-executor';

/** SHA-256 of each stored upstream text, as tee-patch/README.md lists them. */
const UPSTREAM: Record<string, string> = {
  [`${OE}/heima/authentication/src/constants.rs`]: '21142b36d67f6115d3ce7f21494a29c2382575f8d04de827a5736978c4d0b424',
  [`${OE}/heima/authentication/src/auth_token.rs`]: '408bfbcf8b29c4440bb0cdf0225c94dda9403d93981a469ba449aefe4f534169',
  [`${OE}/rpc-server/src/methods/omni/user_login.rs`]: '85ff22d16977e8c6b1a10af7b1011b27ae7b4b1c7f37ab240a682911c1653470',
  [`${OE}/rpc-server/src/methods/omni/submit_user_op_with_auth.rs`]: '78fb1d4274adbccb810fb7cdcc469bde3e8bd92d57cd5001480cc16c4fad17b4',
};

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'akb-tee-patch-'));
  await cp(join(ROOT, 'tee-patch', 'upstream'), dir, { recursive: true });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const git = (...args: string[]) => run('git', args, { cwd: dir });

void describe('tee-patch/agentkeys-phase0.patch', () => {
  void test('the stored upstream files are the texts the README names', async () => {
    for (const [path, sha] of Object.entries(UPSTREAM)) {
      const text = await readFile(join(dir, path));
      assert.equal(createHash('sha256').update(text).digest('hex'), sha, path);
    }
    const readme = await readFile(join(ROOT, 'tee-patch', 'README.md'), 'utf8');
    for (const sha of Object.values(UPSTREAM)) assert.ok(readme.includes(sha), `README lists ${sha}`);
  });

  void test('git apply --check passes; it touches exactly the stored files; applied, it reverses cleanly', async () => {
    await git('apply', '--check', '--verbose', PATCH);
    const { stdout: stat } = await git('apply', '--numstat', PATCH);
    const touched = stat
      .trim()
      .split('\n')
      .map((l) => l.split('\t')[2])
      .sort();
    assert.deepEqual(touched, Object.keys(UPSTREAM).sort());
    await git('apply', PATCH);
    await git('apply', '--check', '--reverse', PATCH);
  });

  void test('the patched TEE is what the dev fixture models: agentkeys in the aud list, its own client id and backend', async () => {
    const patched = join(dir, OE);
    const constants = await readFile(join(patched, 'heima/authentication/src/constants.rs'), 'utf8');
    assert.match(constants, /pub const CLIENT_ID_AGENTKEYS: &str = "agentkeys";/);
    const authToken = await readFile(join(patched, 'heima/authentication/src/auth_token.rs'), 'utf8');
    const lists = [...authToken.matchAll(/Some\(&\[([A-Z_, ]+)\]\)/g)].map((m) => (m[1] ?? '').split(', '));
    assert.equal(lists.length, 2);
    for (const list of lists) assert.deepEqual(list, ['CLIENT_ID_HEIMA', 'CLIENT_ID_WILDMETA', 'CLIENT_ID_AGENTKEYS']);
    // The fixture accepts the upstream list plus agentkeys (upstream versions disagree on pumpx; the fixture takes the union).
    assert.deepEqual([...PATCHED_TOKEN_AUDIENCES].sort(), [...UPSTREAM_TOKEN_AUDIENCES, 'agentkeys'].sort());
    const login = await readFile(join(patched, 'rpc-server/src/methods/omni/user_login.rs'), 'utf8');
    assert.match(login, /OE_AGENTKEYS_API_BASE_URL/);
    assert.match(login, /CLIENT_ID_AGENTKEYS => agentkeys_api\(\)/);
    assert.match(login, /backend\.post_heima_login\(&access_token, body\)/);
    assert.ok(!login.includes('ctx.pumpx_api.post_heima_login'), 'every login goes through the dispatch');
    const submit = await readFile(join(patched, 'rpc-server/src/methods/omni/submit_user_op_with_auth.rs'), 'utf8');
    assert.match(submit, /if params\.client_id == CLIENT_ID_AGENTKEYS \{\s+agentkeys_link_api\(\)/);
    assert.match(submit, /let linked = link_api\s+\.verify_hyperliquid_link/);
  });

  void test('a drifted upstream file is refused by --check (the test would notice a bad fixture)', async () => {
    const other = await mkdtemp(join(tmpdir(), 'akb-tee-patch-drift-'));
    try {
      await cp(join(ROOT, 'tee-patch', 'upstream'), other, { recursive: true });
      const file = join(other, OE, 'heima/authentication/src/auth_token.rs');
      const text = await readFile(file, 'utf8');
      await writeFile(file, text.replaceAll('Some(&[CLIENT_ID_HEIMA, CLIENT_ID_WILDMETA])', 'Some(&[CLIENT_ID_HEIMA, CLIENT_ID_PUMPX, CLIENT_ID_WILDMETA])'));
      await assert.rejects(run('git', ['apply', '--check', PATCH], { cwd: other }), /patch does not apply/);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});
