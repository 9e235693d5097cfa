import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { PATCHED_TOKEN_AUDIENCES } from '../fixtures/tee/server';
import {
  addedLines,
  checkPatchImports,
  checkUseStatement,
  expandUseTree,
  layoutProblems,
  listFiles,
  moduleItems,
  readmeStoredFiles,
  storedFileProblems,
} from './tee-patch-support';

/**
 * The Phase 0 patch (tee-patch/) against the upstream texts stored verbatim in tee-patch/upstream/
 * (litentry/heima, commits and SHA-256 in tee-patch/README.md): it applies and reverses with git,
 * every `use` path it adds resolves to a public item of the stored crate sources, and it does what
 * the dev TEE fixture models.
 */

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const PATCH = join(ROOT, 'tee-patch', 'agentkeys-phase0.patch');
const UPSTREAM = join(ROOT, 'tee-patch', 'upstream');
const OE = 'tee-worker/omni-executor';
const USER_LOGIN = `${OE}/rpc-server/src/methods/omni/user_login.rs`;
const ADD_WALLET = `${OE}/rpc-server/src/methods/omni/add_wallet.rs`;
const SUBMIT = `${OE}/rpc-server/src/methods/omni/submit_user_op_with_auth.rs`;

/** The files the patch changes. */
const PATCHED_FILES = [`${OE}/core/src/auth/auth_token.rs`, `${OE}/core/src/auth/constants.rs`, `${OE}/rpc-server/Cargo.toml`, ADD_WALLET, SUBMIT, USER_LOGIN];

let patch: string;
let readme: string;
/** The stored texts with the patch applied. */
let patched: string;
before(async () => {
  patch = await readFile(PATCH, 'utf8');
  readme = await readFile(join(ROOT, 'tee-patch', 'README.md'), 'utf8');
  patched = await mkdtemp(join(tmpdir(), 'akb-tee-patched-'));
  await cp(UPSTREAM, patched, { recursive: true });
  await run('git', ['apply', PATCH], { cwd: patched });
});
after(async () => {
  await rm(patched, { recursive: true, force: true });
});

async function withCopy<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'akb-tee-patch-'));
  try {
    await cp(UPSTREAM, dir, { recursive: true });
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const read = (dir: string, path: string) => readFile(join(dir, path), 'utf8');

void describe('tee-patch: the stored upstream texts', () => {
  void test('are exactly the files the README lists, each with the SHA-256 it lists and a full commit', () => {
    assert.deepEqual(storedFileProblems(UPSTREAM, readme), []);
    const listed = readmeStoredFiles(readme);
    assert.deepEqual(listed.map((f) => f.path).sort(), listFiles(UPSTREAM));
    for (const f of listed) assert.match(f.commit, /^[0-9a-f]{40}$/, f.path);
  });

  void test('a drifted stored file is refused, by name, and the patch no longer applies to it', async () => {
    await withCopy(async (dir) => {
      const file = `${OE}/core/src/auth/auth_token.rs`;
      const text = await read(dir, file);
      await writeFile(
        join(dir, file),
        text.replace('Some(&[CLIENT_ID_HEIMA, CLIENT_ID_PUMPX, CLIENT_ID_WILDMETA])', 'Some(&[CLIENT_ID_HEIMA, CLIENT_ID_WILDMETA])'),
      );
      const problems = storedFileProblems(dir, readme);
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.match(problems[0] ?? '', /auth_token\.rs: SHA-256 [0-9a-f]{64} differs from the README's [0-9a-f]{64} \(drifted\)/);
      await assert.rejects(run('git', ['apply', '--check', PATCH], { cwd: dir }), /patch does not apply/);
    });
  });

  void test('a stored file the README does not list, or a listed file missing, is refused', async () => {
    await withCopy(async (dir) => {
      await writeFile(join(dir, OE, 'core/src/extra.rs'), 'pub mod x;\n');
      await rm(join(dir, OE, 'core/src/lib.rs'));
      const problems = storedFileProblems(dir, readme);
      assert.ok(
        problems.some((p) => p.includes('core/src/extra.rs: stored but not listed')),
        problems.join('\n'),
      );
      assert.ok(
        problems.some((p) => p.includes('core/src/lib.rs: listed in the README but not stored')),
        problems.join('\n'),
      );
    });
  });
});

void describe('tee-patch: agentkeys-phase0.patch applies', () => {
  void test('git apply --check passes on the stored texts; it touches exactly the patched files; applied, --reverse --check passes and reversing restores the texts', async () => {
    await withCopy(async (dir) => {
      await run('git', ['apply', '--check', PATCH], { cwd: dir });
      const { stdout } = await run('git', ['apply', '--numstat', PATCH], { cwd: dir });
      const touched = stdout
        .trim()
        .split('\n')
        .map((l) => l.split('\t')[2])
        .sort();
      assert.deepEqual(touched, [...PATCHED_FILES].sort());
      await run('git', ['apply', PATCH], { cwd: dir });
      await run('git', ['apply', '--reverse', '--check', PATCH], { cwd: dir });
      await run('git', ['apply', '--reverse', PATCH], { cwd: dir });
      assert.deepEqual(storedFileProblems(dir, readme), []);
    });
  });

  void test('it is a git diff of the stored blobs: each index line names the stored file, and the README names the same blobs', async () => {
    const indexes = [...patch.matchAll(/^diff --git a\/(\S+) b\/\S+\nindex ([0-9a-f]+)\.\.([0-9a-f]+) \d+$/gm)];
    assert.equal(indexes.length, PATCHED_FILES.length);
    for (const m of indexes) {
      const [, file = '', before = '', afterBlob = ''] = m;
      const { stdout: stored } = await run('git', ['hash-object', join(UPSTREAM, file)]);
      assert.ok(stored.startsWith(before), `${file}: the patch's base blob ${before} is not the stored ${stored.trim()}`);
      const { stdout: result } = await run('git', ['hash-object', join(patched, file)]);
      assert.ok(result.startsWith(afterBlob), `${file}: applied, the blob is ${result.trim()}, not ${afterBlob}`);
      if (!file.endsWith('Cargo.toml')) assert.ok(readme.includes(`\`${before}\``), `README names blob ${before} of ${file}`);
    }
  });
});

void describe('tee-patch: imports check (every use path on an added line resolves in the stored sources)', () => {
  void test('all added use paths resolve: workspace paths to public items, registry crates only where rpc-server depends on them', () => {
    const checks = checkPatchImports(patched, patch);
    const failed = checks.filter((c) => c.outcome === 'failed');
    assert.deepEqual(failed, [], failed.map((c) => `${c.file}:${c.line} ${c.path}: ${c.detail}`).join('\n'));
    const resolved = new Set(checks.filter((c) => c.outcome === 'ok').map((c) => c.path));
    for (const path of [
      'oe_core::auth::constants::CLIENT_ID_AGENTKEYS',
      'oe_core::auth::auth_token::AuthTokenValidator',
      'oe_core::auth::auth_token::Validation',
      'super::constants::CLIENT_ID_AGENTKEYS',
      'super::user_login::agentkeys_api',
      'super::user_login::check_agentkeys_identity',
    ]) {
      assert.ok(resolved.has(path), `${path} resolved`);
    }
    // Outside the stored sources: std and registry crates, each a dependency of the patched rpc-server.
    const external = new Set(checks.filter((c) => c.outcome === 'external').map((c) => c.path.split('::')[0]));
    assert.deepEqual([...external].sort(), ['reqwest', 'serde', 'std', 'tracing']);
  });

  void test('the stored texts are one layout: every module-level use of the patched files, context lines too, names a dependency and a declared item', async () => {
    const rust = PATCHED_FILES.filter((f) => f.endsWith('.rs'));
    assert.deepEqual(layoutProblems(patched, rust), []);
    // user_login.rs as cut before (60635e7f): the same body under the pre-move imports, which the stored crates no longer have.
    await withCopy(async (dir) => {
      const text = await read(dir, USER_LOGIN);
      const preMove = text
        .replace('use oe_core::auth::{', 'use heima_authentication::{')
        .replace('use oe_core::intent::executor::IntentExecutor;', 'use oe_core::intent_executor::IntentExecutor;');
      assert.notEqual(preMove, text);
      await writeFile(join(dir, USER_LOGIN), preMove);
      const problems = layoutProblems(dir, [USER_LOGIN]);
      assert.deepEqual(
        [...new Set(problems.map((p) => p.path.split('::').slice(0, 2).join('::')))],
        ['heima_authentication::auth_token', 'heima_authentication::constants', 'oe_core::intent_executor'],
      );
      assert.match(problems[0]?.detail ?? '', /`heima_authentication` is not a crate rpc-server depends on/);
      assert.match(problems.at(-1)?.detail ?? '', /`intent_executor` is not declared in oe-core/);
    });
  });

  void test('without the Cargo.toml hunk the reqwest import fails: registry crates must be dependencies', async () => {
    await withCopy(async (dir) => {
      await run('git', ['apply', PATCH], { cwd: dir });
      await run('git', ['apply', '--reverse', `--include=${OE}/rpc-server/Cargo.toml`, PATCH], { cwd: dir });
      const failed = checkPatchImports(dir, patch).filter((c) => c.outcome === 'failed');
      assert.deepEqual(
        failed.map((c) => c.path),
        ['reqwest::Client', 'reqwest::Url'],
      );
      assert.match(failed[0]?.detail ?? '', /`reqwest` is not a crate rpc-server depends on/);
    });
  });

  void test("the previous patch's import fails: pumpx::pumpx_api names no dependency, and with today's crate name the module is private (E0603)", () => {
    const previous = checkUseStatement(patched, USER_LOGIN, 'use pumpx::pumpx_api::{PumpxApi, PumpxApiClient};');
    assert.deepEqual(
      previous.map((c) => c.outcome),
      ['failed', 'failed'],
    );
    assert.match(previous[0]?.detail ?? '', /`pumpx` is not a crate rpc-server depends on/);
    const renamed = checkUseStatement(patched, USER_LOGIN, 'use oe_client_pumpx::pumpx_api::{PumpxApi, PumpxApiClient};');
    assert.deepEqual(
      renamed.map((c) => c.outcome),
      ['failed', 'failed'],
    );
    assert.match(renamed[0]?.detail ?? '', /module `pumpx_api` is private: .*clients\/pumpx\/src\/lib\.rs\) declares `mod pumpx_api`.*E0603/);
    // The public route to the same crate resolves where its source is stored.
    const publicPath = checkUseStatement(patched, USER_LOGIN, 'use oe_client_pumpx::pubkey_to_address;');
    assert.equal(publicPath[0]?.outcome, 'ok', publicPath[0]?.detail);
  });

  void test('a name that is not declared fails, naming the module searched', () => {
    const [c] = checkUseStatement(patched, USER_LOGIN, 'use oe_core::auth::constants::CLIENT_ID_NOPE;');
    assert.equal(c?.outcome, 'failed');
    assert.match(c?.detail ?? '', /`CLIENT_ID_NOPE` is not declared in oe-core::auth::constants/);
    const [d] = checkUseStatement(UPSTREAM, USER_LOGIN, 'use oe_core::auth::constants::CLIENT_ID_AGENTKEYS;');
    assert.equal(d?.outcome, 'failed', 'unpatched, the constant does not exist');
  });

  void test('the resolver reads use trees, globs, renames and visibility as rustc does', () => {
    assert.deepEqual(expandUseTree('a::{b, c::d as e, f::*, self, g::{h, i}}'), [
      { path: ['a', 'b'], name: 'b' },
      { path: ['a', 'c', 'd'], name: 'e' },
      { path: ['a', 'f', '*'] },
      { path: ['a'], name: 'a' },
      { path: ['a', 'g', 'h'], name: 'h' },
      { path: ['a', 'g', 'i'], name: 'i' },
    ]);
    const items = moduleItems(
      [
        '// pub mod commented;',
        'pub mod open;',
        'mod closed;',
        'pub use closed::*;',
        'pub(crate) fn inner() {}',
        'pub struct S { pub field: u8 }',
        'impl S { pub fn method(&self) {} }',
        '#[cfg(feature = "mocks")]',
        'pub mod mocks { pub fn nested() {} }',
        'const X: [u8; 4] = [0; 4];',
        'pub use crate::{a::{b as c}, d};',
      ].join('\n'),
    );
    assert.deepEqual(
      items.mods.map((m) => [m.name, m.visibility, m.inlineBody === undefined ? 'file' : 'inline']),
      [
        ['open', 'pub', 'file'],
        ['closed', 'private', 'file'],
        ['mocks', 'pub', 'inline'],
      ],
    );
    assert.deepEqual(Object.fromEntries(items.items), { inner: 'restricted', S: 'pub', X: 'private' });
    assert.deepEqual(
      items.uses.map((u) => [u.visibility, u.leaves.map((l) => `${l.path.join('::')}${l.name ? ` as ${l.name}` : ''}`)]),
      [
        ['pub', ['closed::*']],
        ['pub', ['crate::a::b as c', 'crate::d as d']],
      ],
    );
  });

  void test('a dependency rename is followed: base_signer_client is oe-client-signer, whose source is not stored', () => {
    const [c] = checkUseStatement(UPSTREAM, `${OE}/clients/pumpx/src/lib.rs`, 'use base_signer_client::ChainType;');
    assert.equal(c?.outcome, 'failed');
    assert.match(c?.detail ?? '', /the source of workspace crate oe-client-signer \(`base_signer_client`\) is not stored/);
  });

  void test('a use added inside a function body is not passed unchecked', async () => {
    await withCopy(async (dir) => {
      const file = `${OE}/core/src/auth/constants.rs`;
      await writeFile(join(dir, file), `${await read(dir, file)}fn f() {\n\tuse oe_crypto::jwt;\n}\n`);
      const lines = (await read(dir, file)).split('\n').length - 2;
      const synthetic = `--- a/${file}\n+++ b/${file}\n@@ -1,0 +${lines},1 @@\n+\tuse oe_crypto::jwt;\n`;
      const checks = checkPatchImports(dir, synthetic);
      assert.deepEqual(
        checks.map((c) => [c.outcome, c.path]),
        [['failed', 'use oe_crypto::jwt;']],
      );
    });
  });

  void test('the added lines are found per file, by their line numbers in the patched file', () => {
    const lines = addedLines(patch);
    assert.deepEqual([...lines.keys()].sort(), [...PATCHED_FILES].sort());
    for (const [file, numbers] of lines) assert.ok(numbers.length > 0, file);
  });
});

void describe('tee-patch: the patched worker is what the dev TEE fixture models', () => {
  void test('the aud lists accept agentkeys, and the fixture accepts exactly the values they name', async () => {
    const constants = await read(patched, `${OE}/core/src/auth/constants.rs`);
    const values = new Map([...constants.matchAll(/pub const (CLIENT_ID_[A-Z]+): &str = "([a-z]+)";/g)].map((m) => [m[1] ?? '', m[2] ?? '']));
    assert.equal(values.get('CLIENT_ID_AGENTKEYS'), 'agentkeys');
    const authToken = await read(patched, `${OE}/core/src/auth/auth_token.rs`);
    const lists = [...authToken.matchAll(/Some\(&\[([A-Z_, ]+)\]\)/g)].map((m) => (m[1] ?? '').split(', '));
    assert.equal(lists.length, 2);
    for (const list of lists) assert.deepEqual(list.map((name) => values.get(name)).sort(), [...PATCHED_TOKEN_AUDIENCES].sort());
  });

  void test("add_wallet reports by the stored access token's aud: agentkeys to the broker, every other client to pumpx_api", async () => {
    const upstream = await read(UPSTREAM, ADD_WALLET);
    assert.match(upstream, /ctx\.pumpx_api\.add_wallet\(&access_token, None\)/, 'upstream sends every add_wallet to pumpx');
    assert.ok(!upstream.includes('CLIENT_ID_AGENTKEYS'));
    const text = await read(patched, ADD_WALLET);
    assert.match(text, /let Ok\(Some\(access_token\)\) = storage\.get\(&\(omni_account, AUTH_TOKEN_ACCESS_TYPE\)\)/);
    assert.match(
      text,
      /let claims = access_token\s+\.validate\(\s+&ctx\.jwt_rsa_private_key,\s+Validation::new\(AUTH_TOKEN_ACCESS_TYPE\.to_string\(\), true\),/,
    );
    assert.match(text, /if claims\.aud == CLIENT_ID_AGENTKEYS \{[^}]*agentkeys_api\(\)\?\.add_wallet::<AddWalletResponse>\(&access_token\)/);
    assert.match(text, /\} else \{[^}]*ctx\.pumpx_api\s+\.add_wallet\(&access_token, None\)/);
  });

  void test('omni_userLogin: agentkeys reports to the broker client, refused early when unconfigured or over 64 bytes', async () => {
    const text = await read(patched, USER_LOGIN);
    assert.match(text, /pub\(crate\) const AGENTKEYS_API_BASE_URL_ENV: &str = "OE_AGENTKEYS_API_BASE_URL";/);
    assert.match(text, /pub\(crate\) const AGENTKEYS_IDENTITY_MAX_BYTES: usize = 64;/);
    assert.match(
      text,
      /let params = parse_rpc_params::<UserLoginParams>\(params\)\?;\s+if params\.client_id == CLIENT_ID_AGENTKEYS \{\s+agentkeys_api\(\)\?;\s+check_agentkeys_identity\(&params\.user_id\)\?;/,
    );
    assert.ok(text.indexOf('check_agentkeys_identity(&params.user_id)') < text.indexOf('verify_auth(ctx.clone(), &auth)'), 'refused before a code is spent');
    assert.match(text, /if params\.client_id == CLIENT_ID_WILDMETA \|\| params\.client_id == CLIENT_ID_AGENTKEYS \{/);
    assert.match(text, /agentkeys_api\(\)\?\.post_heima_login\(&access_token, &body\)/);
    assert.match(text, /v3\/account\/post_heima_login/);
    assert.match(text, /v3\/account\/add_wallet/);
    assert.match(text, /v1\/account\/check_hyper_agent_address/);
  });

  void test('a malformed OE_AGENTKEYS_API_BASE_URL is an error, not a panic: no expect/unwrap/panic on the added lines', () => {
    const added = patch.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++'));
    const panics = added.filter((l) => /\.expect\(|\.unwrap\(\)|panic!|unreachable!/.test(l));
    assert.deepEqual(panics, []);
    assert.ok(added.some((l) => l.includes('Url::parse(base_url)')));
  });

  void test('omni_submitUserOpWithAuth: the agent link of an agentkeys user is checked at the broker', async () => {
    const text = await read(patched, SUBMIT);
    assert.match(
      text,
      /let linked = if params\.client_id == CLIENT_ID_AGENTKEYS \{\s+agentkeys_api\(\)\?\s+\.verify_hyperliquid_link\(agent_address, main_address, \*login_type\)/,
    );
    assert.match(text, /\} else \{\s+ctx\.wildmeta_api\s+\.verify_hyperliquid_link/);
    assert.match(text, /if params\.client_id == CLIENT_ID_AGENTKEYS \{\s+check_agentkeys_identity\(&params\.user_id\)\?;/);
  });
});

void describe('tee-patch: README and configuration example', () => {
  void test('the README gives the cargo check of the rpc-server package, by its stored name, and states what is unverified', async () => {
    const manifest = await read(UPSTREAM, `${OE}/rpc-server/Cargo.toml`);
    const name = /^\[package\]\nname = "([^"]+)"/m.exec(manifest)?.[1];
    assert.equal(name, 'rpc-server');
    assert.ok(readme.includes(`cargo check -p ${name}`));
    assert.match(readme, /No Rust build was possible here[^\n]*compilation is unverified/);
    assert.match(readme, /## The 64-byte cut/);
    for (let n = 1; n <= (patch.match(/^@@ /gm) ?? []).length; n++) assert.match(readme, new RegExp(`^\\| ${n} \\| `, 'm'), `README explains hunk ${n}`);
  });

  void test('the configuration example names the broker URL and the per-client mailer and OAuth2 entries', async () => {
    const env = await readFile(join(ROOT, 'tee-patch', 'agentkeys-tee.env.example'), 'utf8');
    const keys = [...env.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]);
    for (const key of [
      'OE_AGENTKEYS_API_BASE_URL',
      'OE_MAILER_TYPE_AGENTKEYS',
      'OE_MAILER_API_KEY_AGENTKEYS',
      'OE_MAILER_FROM_EMAIL_AGENTKEYS',
      'OE_GOOGLE_CLIENT_ID_AGENTKEYS',
      'OE_GOOGLE_CLIENT_SECRET_AGENTKEYS',
    ]) {
      assert.ok(keys.includes(key), key);
      assert.ok(readme.includes(key), `README names ${key}`);
    }
    const login = await read(patched, USER_LOGIN);
    assert.ok(login.includes('"OE_AGENTKEYS_API_BASE_URL"'), 'the variable the example sets is the one the patch reads');
  });
});
