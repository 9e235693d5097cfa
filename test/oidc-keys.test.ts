import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createOidcKeysetIfMissing, OidcKeysetError, OidcKeyStore, publishedJwks, rotateOidcKeyset, type OidcKeysetFile } from '../adapters/oidc-keys';
import { generateSigningKeyJwk } from '../lib/signing-key';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'akb-oidc-keys-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe('OIDC keyset file', () => {
  void test('concurrent first users create exactly one keyset, mode 0600', async () => {
    const path = join(dir, 'race', 'oidc-keys.json');
    const created = await Promise.all(Array.from({ length: 8 }, () => createOidcKeysetIfMissing(path)));
    assert.equal(created.filter(Boolean).length, 1);
    const stores = await Promise.all(Array.from({ length: 4 }, () => new OidcKeyStore(path, { createIfMissing: true, recheckMs: 0 }).current()));
    assert.equal(new Set(stores.map((k) => k.active.kid)).size, 1);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  void test('production: a missing keyset is a clear error, not a new key', async () => {
    const store = new OidcKeyStore(join(dir, 'absent.json'), { createIfMissing: false, recheckMs: 0 });
    await assert.rejects(
      store.current(),
      (e: Error) =>
        e instanceof OidcKeysetError &&
        /absent\.json does not exist; create it with `BROKER_OIDC_KEY_PATH=\S+absent\.json npm run oidc:rotate`/.test(e.message),
    );
    await assert.rejects(stat(join(dir, 'absent.json')), /ENOENT/);
  });

  void test('a single private JWK file is a keyset of one, and rotating it converts it', async () => {
    const path = join(dir, 'single.jwk.json');
    const jwk = await generateSigningKeyJwk();
    await writeFile(path, JSON.stringify(jwk));
    const store = new OidcKeyStore(path, { createIfMissing: false, recheckMs: 0 });
    assert.equal((await store.current()).active.kid, jwk.kid);
    const r = await rotateOidcKeyset(path, { retentionSeconds: 60 });
    assert.equal(r.retiredKid, jwk.kid);
    const file = JSON.parse(await readFile(path, 'utf8')) as OidcKeysetFile;
    assert.equal(file.version, 1);
    assert.equal(file.active_kid, r.activeKid);
    // The store picks the rotation up without being rebuilt.
    const now = await store.current();
    assert.equal(now.active.kid, r.activeKid);
    assert.deepEqual(
      publishedJwks(now, Date.now()).map((k) => k.kid),
      [r.activeKid, jwk.kid],
    );
    assert.ok(
      publishedJwks(now, Date.now()).every((k) => !('d' in k)),
      'a private part is published',
    );
  });

  void test('a malformed keyset is refused with the path in the message', async () => {
    const path = join(dir, 'bad.json');
    for (const text of ['not json', '{"version":1,"active_kid":"x","keys":[]}', '{"version":2}']) {
      await writeFile(path, text);
      await assert.rejects(
        new OidcKeyStore(path, { createIfMissing: false, recheckMs: 0 }).current(),
        (e: Error) => e instanceof OidcKeysetError && e.message.includes(path),
      );
    }
  });
});
