/**
 * The browser Google sign-in's return URL over real HTTP, with exact URLs configured
 * (BROKER_GOOGLE_RETURN_URLS) and no bare origin: a path not listed is 400 before any flow, a
 * respelling of a listed URL is that URL (and the browser is sent to the configured spelling), the
 * console's own URL needs no configuration, and the older origin setting is warned about in
 * production. The pure rules are in test/google-return-url.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildApp } from '../api/app';
import { assertUnchanged, dbSnapshot, spyWorkflowStarts } from './adversarial-probes';
import { parseGoogleReturnTargets, type GoogleReturnTargets } from '../lib/google-return-url';
import { productionReady } from './docs-ui-client';
import { browserStart, browserStartUrl, callback, consent, exchange, pkcePair, startGoogleStack, uniqueHint, type GoogleStack } from './google-login-client';

const RETURN_URL = 'https://app.example.com/after-login';
let g: GoogleStack;
before(async () => {
  g = await startGoogleStack({ BROKER_GOOGLE_RETURN_URLS: `${RETURN_URL},http://127.0.0.1:5173/done`, BROKER_GOOGLE_RETURN_ORIGINS: '' });
});
after(async () => {
  await g?.stop();
});

/** A whole browser sign-in returning to `returnTo`: where the callback sends the browser, and that its code exchanges once. */
async function signInReturningTo(returnTo: string): Promise<URL> {
  const start = await browserStart(g.stack, returnTo);
  const back = await callback(await consent(start.authorizeUrl, uniqueHint('return-url')), start.cookie);
  assert.equal(back.status, 302, back.text);
  const target = new URL(back.location as string);
  const code = target.searchParams.get('exchange_code') as string;
  assert.match(code, /^[0-9a-f]{32}\.[\w-]{43}$/);
  const ex = await exchange(g.stack, code, start.verifier);
  assert.equal(ex.status, 200, ex.text);
  return target;
}

void describe('Google sign-in: exact return URLs', () => {
  void test('a return_to not listed exactly → 400 bad_request naming return_to; no cookie, no flow, nothing written', async () => {
    const own = g.stack.url;
    for (const bad of [
      'https://app.example.com/other',
      'https://app.example.com/after-login/',
      'https://app.example.com/after-login/deeper',
      'https://app.example.com/',
      'https://app.example.com/after-login?next=%2Fadmin',
      'https://app.example.com/after-login#frag',
      'https://app.example.com.evil.example/after-login',
      'http://app.example.com/after-login',
      'http://127.0.0.1:5173/elsewhere',
      `${own}/`,
      `${own}/docs/`,
      `${own}/console`,
      `${own}/console/grants`,
      `${own}/console/?tab=2`,
      'https://[::1/after-login',
      'not a url',
    ]) {
      const before = await dbSnapshot(g.stack.db);
      const starts = spyWorkflowStarts(g.stack.temporal);
      try {
        const r = await fetch(browserStartUrl(g.stack, bad, pkcePair().challenge), { redirect: 'manual' });
        const body = (await r.json()) as { error: string; message: string };
        assert.equal(r.status, 400, `${bad}: ${JSON.stringify(body)}`);
        assert.equal(body.error, 'bad_request', bad);
        assert.match(body.message, /^return_to /, bad);
        assert.ok(!body.message.includes(RETURN_URL), 'the refusal shows the allow-list');
        assert.equal(r.headers.get('set-cookie'), null, `${bad}: a refused start set the sign-in cookie`);
        assert.equal(starts.count(), 0, `${bad}: a refused start started a workflow`);
        await assertUnchanged(g.stack.db, before, `after the refused start to ${bad}`);
      } finally {
        starts.restore();
      }
    }
  });

  void test('a respelled listed URL is that URL: the browser returns to the configured spelling, with only the exchange code in the query', async () => {
    for (const spelling of [
      'HTTPS://App.Example.COM:443/x/../after-login',
      'https://app.example.com/./%61fter-login',
      'https://app.example.com/after%2dlogin',
    ]) {
      const target = await signInReturningTo(spelling);
      assert.equal(`${target.origin}${target.pathname}`, RETURN_URL, spelling);
      assert.deepEqual([...target.searchParams.keys()], ['exchange_code'], spelling);
      assert.equal(target.hash, '');
    }
  });

  void test('a sign-in whose return URL left the list while it ran is not sent there: 400 page, no exchange code', async () => {
    const start = await browserStart(g.stack, RETURN_URL);
    const granted = await consent(start.authorizeUrl, uniqueHint('return-url-removed'));
    // The operator drops the URL (a restart with a shorter BROKER_GOOGLE_RETURN_URLS) while the person is at Google.
    const config = g.stack.config as { googleReturnTargets: GoogleReturnTargets };
    const listed = config.googleReturnTargets;
    config.googleReturnTargets = parseGoogleReturnTargets('http://127.0.0.1:5173/done', [], new URL(g.stack.url).origin);
    try {
      const back = await callback(granted, start.cookie);
      assert.equal(back.status, 400, back.text);
      assert.equal(back.location, null, 'the browser was sent on');
      assert.match(back.text, /no longer one this broker returns to/);
      assert.doesNotMatch(back.text, /exchange_code/);
    } finally {
      config.googleReturnTargets = listed;
    }
  });

  void test("the console's own URL needs no configuration (console/src/main.ts sends <origin>/console/)", async () => {
    const own = new URL(g.stack.url);
    // As the console sends it, and respelled (an IPv4 address in hex, a dot segment).
    for (const returnTo of [`${own.origin}/console/`, `http://0x7f.0.0.1:${own.port}/console/./`]) {
      const target = await signInReturningTo(returnTo);
      assert.equal(`${target.origin}${target.pathname}`, `${own.origin}/console/`, returnTo);
    }
  });
});

void describe('Google sign-in: the older origin setting', () => {
  /** The API's log lines when a broker with `config` starts (shares the stack's database and Temporal). */
  async function startUpLog(config: Partial<GoogleStack['stack']['config']>): Promise<{ level: number; msg: string; origins?: string[] }[]> {
    const lines: string[] = [];
    const app = await buildApp(
      { ...g.stack.deps, config: productionReady(g.stack, config) },
      { logLevel: 'info', logStream: { write: (l: string) => void lines.push(l) } },
    );
    await app.ready();
    await app.close();
    return lines.map((l) => JSON.parse(l) as { level: number; msg: string; origins?: string[] });
  }

  void test('an origin in BROKER_GOOGLE_RETURN_ORIGINS still allows any path, and production warns about it once at start-up', async () => {
    const targets = { urls: [`${g.stack.url}/console/`], origins: ['https://legacy.example.com'] };
    const warned = (await startUpLog({ isProduction: true, googleReturnTargets: targets })).filter((l) => /BROKER_GOOGLE_RETURN_ORIGINS/.test(l.msg));
    assert.equal(warned.length, 1, JSON.stringify(warned));
    assert.equal(warned[0]?.level, 40, 'a warning');
    assert.deepEqual(warned[0]?.origins, ['https://legacy.example.com']);
    assert.match(warned[0]?.msg ?? '', /BROKER_GOOGLE_RETURN_URLS/);
    // Exact URLs only, or outside production: no warning.
    for (const config of [
      { isProduction: true, googleReturnTargets: { ...targets, origins: [] } },
      { isProduction: false, googleReturnTargets: targets },
    ])
      assert.deepEqual(
        (await startUpLog(config)).filter((l) => /BROKER_GOOGLE_RETURN_ORIGINS/.test(l.msg)),
        [],
        JSON.stringify(config),
      );
  });
});
