/**
 * Anonymous routes that open a flow, against a page of another site: the page can make every
 * visitor's browser send a bodiless POST /v1/device/code or /v1/session/passkey/options (no
 * preflight) or GET the Google start (an
 * <img>, a fetch, a frame), each opening a flow that lives its TTL. The browser says where such a
 * request comes from (Fetch Metadata, api/fetch-metadata.ts); those are 403 and start nothing.
 * What the CLI (no Sec-Fetch-* headers), the console (same-origin) and an app sending the person's
 * tab to the Google start (a top-level navigation) send still works.
 *
 * Node's fetch rewrites Sec-Fetch-Mode to `cors`, so the Google start is requested with node:http,
 * headers exactly as a browser sends them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type WorkflowStartSpy } from './adversarial-probes';
import { pkcePair, RETURN_ORIGIN, startGoogleStack, type GoogleStack } from './google-login-client';
import type { TestStack } from './harness';
import { rawRequest, type RawAnswer } from './support/raw-http';

let g: GoogleStack;
let stack: TestStack;
let starts: WorkflowStartSpy;

before(async () => {
  g = await startGoogleStack();
  stack = g.stack;
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await g?.stop();
});

/** Sec-Fetch-* as a browser sends them. */
const fetchMeta = (site: string, mode: string, dest: string): Record<string, string> => ({
  'sec-fetch-site': site,
  'sec-fetch-mode': mode,
  'sec-fetch-dest': dest,
});

/** A GET with exactly these headers (no redirect followed). */
const rawGet = (path: string, headers: Record<string, string>): Promise<RawAnswer> => rawRequest(stack.url, 'GET', path, { headers });

const googleStart = (returnTo: string) => {
  const q = new URLSearchParams({ return_to: returnTo, code_challenge: pkcePair().challenge, code_challenge_method: 'S256' });
  return `/v1/session/google_oauth_login?${q.toString()}`;
};

void describe('POST /v1/device/code from a page of another site', () => {
  void test('Sec-Fetch-Site cross-site or same-site (a bodiless no-cors POST, a form) → 403, nothing started, nothing written', async () => {
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const [name, headers, body] of [
      ['cross-site no-cors, no body', fetchMeta('cross-site', 'no-cors', 'empty'), undefined],
      ['cross-site navigate (a form), no body', fetchMeta('cross-site', 'navigate', 'document'), undefined],
      ['same-site no-cors, no body', fetchMeta('same-site', 'no-cors', 'empty'), undefined],
      ['cross-site with a JSON body', fetchMeta('cross-site', 'cors', 'empty'), { client_id: 'agentkeys-cli' }],
      ['upper-case value', { 'sec-fetch-site': 'Cross-Site' }, undefined],
    ] as const) {
      const res = await stack.request('POST', '/v1/device/code', { headers: { ...headers }, ...(body ? { body } : {}) });
      assertRefused(
        res,
        403,
        'forbidden',
        /^a device code cannot be requested by a page of another site \(Sec-Fetch-Site: (cross|same)-site\): a device asks for its code itself/,
        name,
      );
    }
    await assertUnchanged(stack.db, before, 'cross-site device code requests');
    assert.equal(starts.count(), started, 'a refused device code request started a workflow');
  });

  void test('the CLI (no Sec-Fetch-*), a same-origin page and a typed address (none) get a code', async () => {
    for (const [name, headers] of [
      ['no Sec-Fetch-* (the CLI)', {}],
      ['same-origin', fetchMeta('same-origin', 'cors', 'empty')],
      ['none', fetchMeta('none', 'navigate', 'document')],
    ] as const) {
      const started = starts.count();
      const res = await stack.request('POST', '/v1/device/code', { headers: { ...headers } });
      assert.equal(res.status, 200, `${name}: ${res.text}`);
      assert.equal(starts.count(), started + 1, name);
    }
  });
});

void describe('POST /v1/session/passkey/options from a page of another site', () => {
  void test('cross-site or same-site → 403, nothing started, nothing written; the same-origin console and a client without Sec-Fetch-* get options', async () => {
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const [name, headers] of [
      ['cross-site no-cors, no body', fetchMeta('cross-site', 'no-cors', 'empty')],
      ['same-site no-cors, no body', fetchMeta('same-site', 'no-cors', 'empty')],
    ] as const) {
      const res = await stack.request('POST', '/v1/session/passkey/options', { headers: { ...headers } });
      assertRefused(res, 403, 'forbidden', /^passkey options cannot be requested by a page of another site/, name);
    }
    await assertUnchanged(stack.db, before, 'cross-site passkey options');
    assert.equal(starts.count(), started, 'a refused passkey options request started a workflow');
    for (const [name, headers] of [
      ['no Sec-Fetch-*', {}],
      ['same-origin', fetchMeta('same-origin', 'cors', 'empty')],
    ] as const) {
      const res = await stack.request('POST', '/v1/session/passkey/options', { headers: { ...headers } });
      assert.equal(res.status, 200, `${name}: ${res.text}`);
    }
  });
});

void describe('GET /v1/session/google_oauth_login from a page of another site', () => {
  void test('not a top-level navigation (an <img>, a fetch, a frame) → 403, nothing started, nothing written', async () => {
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const [name, headers] of [
      ['cross-site <img>', fetchMeta('cross-site', 'no-cors', 'image')],
      ['cross-site fetch()', fetchMeta('cross-site', 'cors', 'empty')],
      ['cross-site no-cors fetch()', fetchMeta('cross-site', 'no-cors', 'empty')],
      ['cross-site <iframe>', fetchMeta('cross-site', 'navigate', 'iframe')],
      ['same-site <img>', fetchMeta('same-site', 'no-cors', 'image')],
      ['cross-site, no Sec-Fetch-Mode', { 'sec-fetch-site': 'cross-site' }],
    ] as const) {
      const res = await rawGet(googleStart(`${RETURN_ORIGIN}/done`), headers);
      assertRefused(
        res,
        403,
        'forbidden',
        /^a Google sign-in is started by sending the browser tab to this URL, not from an image, a frame or a fetch of another site$/,
        name,
      );
      assert.equal(res.headers['set-cookie'], undefined, `${name}: a binding cookie was set`);
      assert.equal(res.headers['cache-control'], 'no-store', name);
    }
    await assertUnchanged(stack.db, before, 'cross-site Google starts');
    assert.equal(starts.count(), started, 'a refused Google start started a workflow');
  });

  void test("returning to this broker's own origin (the console) from another site, even navigating → 403, nothing started", async () => {
    const own = new URL(stack.config.publicUrl).origin;
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const [name, headers] of [
      ['cross-site top-level navigation', fetchMeta('cross-site', 'navigate', 'document')],
      ['same-site top-level navigation', fetchMeta('same-site', 'navigate', 'document')],
    ] as const) {
      const res = await rawGet(googleStart(`${own}/console/`), headers);
      assertRefused(res, 403, 'forbidden', /^a sign-in that returns to this broker's console is started from the console itself, not from another site/, name);
    }
    await assertUnchanged(stack.db, before, "cross-site starts returning to the broker's origin");
    assert.equal(starts.count(), started, 'a refused Google start started a workflow');
  });

  void test('what browsers send for a real start still redirects to the provider: the console (same-origin), an app sending the tab (cross-site navigation), a typed address, a client without Sec-Fetch-*', async () => {
    const own = new URL(stack.config.publicUrl).origin;
    for (const [name, returnTo, headers] of [
      ['the console: same-origin navigation', `${own}/console/`, fetchMeta('same-origin', 'navigate', 'document')],
      ['an app on another site sends the tab', `${RETURN_ORIGIN}/done`, fetchMeta('cross-site', 'navigate', 'document')],
      ['an app on another site opens a window (no Sec-Fetch-Dest)', `${RETURN_ORIGIN}/done`, { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' }],
      ['a typed address', `${own}/console/`, fetchMeta('none', 'navigate', 'document')],
      ['no Sec-Fetch-*', `${own}/console/`, {}],
    ] as const) {
      const started = starts.count();
      const res = await rawGet(googleStart(returnTo), { ...headers });
      assert.equal(res.status, 302, `${name}: ${res.text}`);
      assert.match(String(res.headers.location), new RegExp(`^${g.provider.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), name);
      assert.equal(starts.count(), started + 1, name);
    }
  });
});
