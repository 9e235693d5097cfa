/**
 * Where the /docs UI (Swagger UI) is served (api/plugins/docs.ts, BROKER_DOCS_UI): on the public
 * listener in development, as the README promises; in production on the ops listener, another
 * origin than the console's (whose bearer is in sessionStorage), while the OpenAPI document stays
 * public at /docs/json. Chromium's view of the same is test/browser/docs-ui.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { docsUiPlace } from '../api/plugins/docs';
import { docsVariant } from './docs-ui-client';
import { startStack, type TestStack } from './harness';

let stack: TestStack;
before(async () => {
  stack = await startStack({ worker: false });
});
after(async () => {
  await stack?.stop();
});

const directives = (csp: string | null): Record<string, string[]> =>
  Object.fromEntries(
    (csp ?? '')
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...sources]) => [name, sources]),
  ) as Record<string, string[]>;

void describe('/docs: where the UI is served', () => {
  void test('the default: the public listener outside production, the ops listener in production; BROKER_DOCS_UI overrides both', () => {
    assert.equal(docsUiPlace({ BROKER_DOCS_UI: undefined, isProduction: false }), 'public');
    assert.equal(docsUiPlace({ BROKER_DOCS_UI: undefined, isProduction: true }), 'ops');
    assert.equal(docsUiPlace({ BROKER_DOCS_UI: 'public', isProduction: true }), 'public');
    assert.equal(docsUiPlace({ BROKER_DOCS_UI: 'off', isProduction: false }), 'off');
    assert.equal(stack.config.BROKER_DOCS_UI, undefined);
  });

  void test('development (npm start): the UI on the public listener, not on the ops listener', async () => {
    const v = await docsVariant(stack, {});
    try {
      const ui = await fetch(`${v.url}/docs/`);
      assert.equal(ui.status, 200);
      assert.match(await ui.text(), /swagger-ui/);
      assert.equal((await fetch(`${v.opsUrl}/docs/`)).status, 404);
      assert.equal((await fetch(`${v.opsUrl}/metrics`)).status, 200);
    } finally {
      await v.close();
    }
  });

  void test('production: the public listener has no UI (404 naming the ops listener) but keeps the OpenAPI document', async () => {
    const v = await docsVariant(stack, { isProduction: true });
    try {
      for (const path of ['/docs', '/docs/', '/docs/static/index.html', '/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-initializer.js']) {
        const r = await fetch(`${v.url}${path}`, { redirect: 'manual' });
        const body = (await r.json()) as { error: string; message: string };
        assert.equal(r.status, 404, path);
        assert.equal(body.error, 'not_found', path);
        assert.match(body.message, /ops listener.*BROKER_DOCS_UI.*\/docs\/json/, path);
        assert.match(r.headers.get('content-type') ?? '', /^application\/json/, path);
        assert.match(r.headers.get('content-security-policy') ?? '', /^default-src 'none'/, `${path}: the API's policy, not the UI's`);
      }
      const doc = await fetch(`${v.url}/docs/json`);
      assert.equal(doc.status, 200);
      const paths = Object.keys(((await doc.json()) as { paths: Record<string, unknown> }).paths);
      for (const p of ['/v1/session/email_code', '/v1/session/me']) assert.ok(paths.includes(p), p);
      assert.ok(!paths.some((p) => p.startsWith('/docs')), 'the document lists its own /docs routes');
      const yaml = await fetch(`${v.url}/docs/yaml`);
      assert.equal(yaml.status, 200);
      assert.match(yaml.headers.get('content-type') ?? '', /^application\/x-yaml/);
      assert.match(await yaml.text(), /^openapi: 3/m);
    } finally {
      await v.close();
    }
  });

  void test('production: the UI on the ops listener, with the whole document, its assets, its own policy and no "Try it out"', async () => {
    const v = await docsVariant(stack, { isProduction: true });
    try {
      const page = await fetch(`${v.opsUrl}/docs/`);
      const html = await page.text();
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(html, /swagger-ui/);
      assert.equal(page.headers.get('x-frame-options'), 'DENY');
      assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(page.headers.get('cache-control'), 'no-store');
      const csp = directives(page.headers.get('content-security-policy'));
      assert.deepEqual(csp['script-src'], ["'self'"]);
      assert.deepEqual(csp['connect-src'], ["'self'"], 'the ops page fetches its document and nothing else');
      assert.deepEqual(csp['frame-ancestors'], ["'none'"]);
      assert.deepEqual(csp['object-src'], ["'none'"]);
      assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), 'an inline <script> the CSP blocks');
      const assets = [...html.matchAll(/<(?:script[^>]*\bsrc|link[^>]*\bhref)="([^"]+)"/g)].map((m) => m[1] ?? '');
      assert.ok(assets.length >= 5, assets.join(', '));
      for (const asset of assets) {
        const url = new URL(asset, `${v.opsUrl}/docs/`);
        assert.equal(url.origin, v.opsUrl, `${asset} is not same-origin`);
        const res = await fetch(url);
        assert.equal(res.status, 200, asset);
        assert.match(res.headers.get('content-type') ?? '', /^(application\/javascript|text\/css|image\/png)/, asset);
        await res.arrayBuffer();
      }
      const initializer = await (await fetch(`${v.opsUrl}/docs/static/swagger-initializer.js`)).text();
      assert.match(initializer, /"supportedSubmitMethods":\[\]/, '"Try it out" is off: the API answers no CORS to this origin');
      // The same document as the public listener's, and the ops listener's own routes still answer.
      const opsDoc = await (await fetch(`${v.opsUrl}/docs/json`)).json();
      const publicDoc = await (await fetch(`${v.url}/docs/json`)).json();
      assert.deepEqual(opsDoc, publicDoc);
      assert.equal((await fetch(`${v.opsUrl}/docs`, { redirect: 'manual' })).status, 200);
      assert.equal((await fetch(`${v.opsUrl}/metrics`)).status, 200);
      for (const path of ['/healthz', '/v1/session/me', '/docsx', '/console/']) assert.equal((await fetch(`${v.opsUrl}${path}`)).status, 404, path);
    } finally {
      await v.close();
    }
  });

  void test('BROKER_DOCS_UI=public in production serves it on the public listener; off serves it nowhere (the document stays)', async () => {
    const pub = await docsVariant(stack, { isProduction: true, BROKER_DOCS_UI: 'public' });
    try {
      assert.equal((await fetch(`${pub.url}/docs/`)).status, 200);
      assert.equal((await fetch(`${pub.opsUrl}/docs/`)).status, 404);
    } finally {
      await pub.close();
    }
    const off = await docsVariant(stack, { isProduction: false, BROKER_DOCS_UI: 'off' });
    try {
      const r = await fetch(`${off.url}/docs/`);
      assert.equal(r.status, 404);
      assert.match(((await r.json()) as { message: string }).message, /off \(BROKER_DOCS_UI\)/);
      assert.equal((await fetch(`${off.opsUrl}/docs/`)).status, 404);
      assert.equal((await fetch(`${off.url}/docs/json`)).status, 200);
    } finally {
      await off.close();
    }
  });
});
