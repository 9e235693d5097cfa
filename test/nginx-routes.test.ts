/**
 * The production nginx site passes every public route of the broker and fences the TEE's: each path
 * of the OpenAPI document, and each console page, is taken by the location nginx would pick for it
 * (test/support/nginx-site.ts). A route added to the broker and not to deploy/nginx fails here, not
 * as a 404 in production.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CONSOLE_PAGES } from '../api/plugins/console';
import { PASSKEY_BODY_LIMIT_BYTES } from '../api/routes/passkey';
import { publicExposure, type PublicExposure } from '../scripts/cluster/public-routes';
import { startStack, type TestStack } from './harness';
import { locationFor, publicLocations, publicServerBlock, type NginxLocation } from './support/nginx-site';

let stack: TestStack;
before(async () => {
  stack = await startStack({ worker: false });
});
after(async () => {
  await stack?.stop();
});

const served = (l: NginxLocation | undefined): PublicExposure => (!l?.proxied ? 'ops' : l.fenced ? 'tee' : 'public');

const describeLocation = (l: NginxLocation | undefined) => (l ? `location ${l.modifier} ${l.pattern}`.replace(/\s+/g, ' ') : 'no location');

void describe('nginx: the public server and the routes of the broker', () => {
  void test('every path of the OpenAPI document and every console page is passed to the broker; the TEE callbacks only behind their allow list; the codec and dev routes not at all', async () => {
    const doc = await stack.request('GET', '/docs/json');
    assert.equal(doc.status, 200, doc.text);
    const documented = Object.keys((doc.body as { paths: Record<string, unknown> }).paths).map((p) => p.replace(/\{[^}]+\}/g, 'x1'));
    assert.ok(documented.length > 40, `only ${documented.length} paths documented`);
    // Hidden from the document: the console's files and the TEE callbacks' aliases (api/routes/tee-account.ts).
    const paths = [...documented, ...CONSOLE_PAGES, '/console/app.js', '/console/app.css', '/docs', '/docs/json', '/add_wallet', '/get_account_user_id'];
    const locations = publicLocations();
    const wrong = paths
      .map((path) => ({ path, at: locationFor(locations, path) }))
      .filter(({ path, at }) => served(at) !== publicExposure(path))
      .map(({ path, at }) => `${path}: ${describeLocation(at)} serves it as ${served(at)}, not ${publicExposure(path)}`);
    assert.deepEqual(wrong, []);
    for (const path of ['/v3/account/post_heima_login', '/v1/account/check_hyper_agent_address', '/codec/decode', '/v1/mint-gcp-token'])
      assert.ok(documented.includes(path), `${path} is documented`);
  });

  void test("a passkey's answer gets through at the size the broker takes on its routes", () => {
    const locations = publicLocations();
    for (const path of ['/v1/passkeys/registration', '/v1/session/passkey']) {
      const at = locationFor(locations, path);
      const size = /client_max_body_size\s+(\d+)k\s*;/.exec(at?.body ?? '')?.[1];
      assert.equal(Number(size) * 1024, PASSKEY_BODY_LIMIT_BYTES, `${path}: ${describeLocation(at)} takes ${size ?? 'BODY_LIMIT'}`);
      assert.ok(at?.proxied, path);
    }
  });

  void test("the routes whose query carries a secret log only critical errors: nginx's error lines quote the query", () => {
    assert.match(publicServerBlock(), /^\s*error_log\s+# ERROR_LOG\s+error\s*;/m, 'the public server has its error log');
    const locations = publicLocations();
    // A device user code, Google's code and state, the console's exchange code or a user code in its link.
    for (const path of [
      '/v1/device/verify',
      '/v1/session/google_oauth_callback',
      ...CONSOLE_PAGES,
      '/get_account_user_id',
      '/v3/account/get_account_user_id',
    ]) {
      const at = locationFor(locations, path);
      assert.ok(at?.proxied, path);
      assert.match(at?.body ?? '', /\berror_log\s+# ERROR_LOG\s+crit\s*;/, `${path}: ${describeLocation(at)} logs errors with its query`);
    }
  });

  void test('the ops routes and anything unknown are not passed on the public server', () => {
    const locations = publicLocations();
    for (const path of [
      '/codec/decode',
      '/readyz',
      '/healthz',
      '/_dev/mail',
      '/metrics',
      '/v1/nothing',
      '/v1/account/other',
      '/v1/mint-',
      '/v1/mint-aws-creds/x',
    ])
      assert.equal(locationFor(locations, path)?.proxied ?? false, false, `${path} passes: ${describeLocation(locationFor(locations, path))}`);
  });

  void test('how nginx picks a location: exact, then a ^~ prefix, then the first regular expression, then the longest prefix', () => {
    const l = (modifier: string, pattern: string): NginxLocation => ({ modifier, pattern, body: pattern, proxied: true, fenced: false });
    const set = [l('', '/'), l('', '/a/'), l('^~', '/a/b/'), l('~', '^/a/.*z$'), l('=', '/a/z'), l('~*', '^/C')];
    assert.equal(locationFor(set, '/a/z')?.modifier, '=');
    assert.equal(locationFor(set, '/a/b/z')?.pattern, '/a/b/');
    assert.equal(locationFor(set, '/a/yz')?.pattern, '^/a/.*z$');
    assert.equal(locationFor(set, '/a/y')?.pattern, '/a/');
    assert.equal(locationFor(set, '/c')?.pattern, '^/C');
    assert.equal(locationFor(set, '/q')?.pattern, '/');
  });
});
