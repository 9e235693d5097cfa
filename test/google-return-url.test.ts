/**
 * Where a browser Google sign-in may return to (lib/google-return-url.ts), without a stack: exact
 * URLs compared after WHATWG parsing and RFC 3986 percent-encoding normalisation, no query or
 * fragment, the console's own URL always allowed, and the older bare origins (any path) kept.
 * The route's answers over HTTP are in test/google-return-urls.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../lib/config';
import { allowedGoogleReturnUrl, parseGoogleReturnTargets, returnUrlKey, ReturnUrlRefused } from '../lib/google-return-url';

const PUBLIC = 'https://broker.example.com';
const targets = parseGoogleReturnTargets('https://app.example.com/after-login, https://app.example.com/caf%C3%A9/,https://app.example.com', [], PUBLIC);
const refused = (returnTo: string) =>
  assert.throws(() => allowedGoogleReturnUrl(returnTo, targets), ReturnUrlRefused, `${JSON.stringify(returnTo)} was accepted`);

void describe('Google return URLs: the settings', () => {
  void test("the console's URL is always an exact entry; entries are kept in WHATWG spelling; an empty path is /", () => {
    assert.deepEqual(parseGoogleReturnTargets('', [], PUBLIC), { urls: [`${PUBLIC}/console/`], origins: [] });
    assert.deepEqual(targets.urls, [
      'https://app.example.com/after-login',
      'https://app.example.com/caf%C3%A9/',
      'https://app.example.com/',
      `${PUBLIC}/console/`,
    ]);
    // The same URL twice (two spellings) is one entry.
    assert.deepEqual(parseGoogleReturnTargets('https://APP.example.com:443/a/../x,https://app.example.com/x', [], PUBLIC).urls, [
      'https://app.example.com/x',
      `${PUBLIC}/console/`,
    ]);
  });

  void test('an exact entry with a query, a fragment, user info, another scheme, or no URL at all is refused at start', () => {
    for (const bad of [
      'https://app.example.com/x?next=1',
      'https://app.example.com/x?',
      'https://app.example.com/x#top',
      'https://user:pw@app.example.com/x',
      'javascript:alert(1)',
      'ftp://app.example.com/x',
      '/console/',
      'app.example.com/x',
    ])
      assert.throws(
        () => loadConfig({ BROKER_GOOGLE_RETURN_URLS: bad }),
        (e: unknown) => e instanceof ConfigError && e.message.includes('BROKER_GOOGLE_RETURN_URLS') && e.message.includes(bad),
        bad,
      );
  });

  void test('BROKER_GOOGLE_RETURN_ORIGINS still takes bare origins (a trailing slash too), and points an entry with a path to BROKER_GOOGLE_RETURN_URLS', () => {
    const config = loadConfig({ BROKER_PUBLIC_URL: PUBLIC, BROKER_GOOGLE_RETURN_ORIGINS: 'https://app.example.com/, http://127.0.0.1:5173' });
    assert.deepEqual(config.googleReturnTargets, { urls: [`${PUBLIC}/console/`], origins: ['https://app.example.com', 'http://127.0.0.1:5173'] });
    assert.throws(
      () => loadConfig({ BROKER_GOOGLE_RETURN_ORIGINS: 'https://app.example.com/after-login' }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /BROKER_GOOGLE_RETURN_ORIGINS: "https:\/\/app\.example\.com\/after-login" is not an origin.*BROKER_GOOGLE_RETURN_URLS/.test(e.message),
    );
  });

  void test('with zero configuration a browser sign-in returns to the console on the public URL, and only there', () => {
    const config = loadConfig({ BROKER_PUBLIC_URL: `${PUBLIC}/` });
    assert.equal(allowedGoogleReturnUrl(`${PUBLIC}/console/`, config.googleReturnTargets), `${PUBLIC}/console/`);
    for (const other of [`${PUBLIC}/`, `${PUBLIC}/console`, `${PUBLIC}/console/grants`, `${PUBLIC}/docs/`, `${PUBLIC}/console/?x=1`])
      assert.throws(() => allowedGoogleReturnUrl(other, config.googleReturnTargets), ReturnUrlRefused, other);
  });
});

void describe('Google return URLs: a requested return_to', () => {
  void test('two spellings of one URL are one: host case, default port, dot segments, escapes, an empty path', () => {
    for (const [spelling, configured] of [
      ['https://app.example.com/after-login', 'https://app.example.com/after-login'],
      ['HTTPS://App.Example.COM/after-login', 'https://app.example.com/after-login'],
      ['https://app.example.com:443/after-login', 'https://app.example.com/after-login'],
      ['https://app.example.com/x/../after-login', 'https://app.example.com/after-login'],
      ['https://app.example.com/./x/%2e%2E/after-login', 'https://app.example.com/after-login'],
      ['https://app.example.com/%61fter%2Dlogin', 'https://app.example.com/after-login'],
      ['https://app.example.com/café/', 'https://app.example.com/caf%C3%A9/'],
      ['https://app.example.com/caf%c3%a9/', 'https://app.example.com/caf%C3%A9/'],
      ['https://app.example.com', 'https://app.example.com/'],
      ['https://broker.example.com/console/', `${PUBLIC}/console/`],
      ['https://BROKER.example.com:443/console/x/..', `${PUBLIC}/console/`],
    ] as const) {
      // The redirect goes to the configured spelling, whatever the request's.
      assert.equal(allowedGoogleReturnUrl(spelling, targets), configured, spelling);
      assert.equal(returnUrlKey(new URL(spelling)), returnUrlKey(new URL(configured)), spelling);
    }
  });

  void test('another path, a trailing slash more or less, a query or fragment (even empty), another scheme, port or host, user info: refused', () => {
    for (const bad of [
      'https://app.example.com/other',
      'https://app.example.com/after-login/',
      'https://app.example.com/after-login/x',
      'https://app.example.com/AFTER-LOGIN',
      'https://app.example.com/after-login%2F',
      'https://app.example.com/caf%C3%A9',
      'https://app.example.com/after-login?tab=2',
      'https://app.example.com/after-login?',
      'https://app.example.com/after-login#x',
      'https://app.example.com/after-login#',
      'https://app.example.com/?exchange_code=x',
      'http://app.example.com/after-login',
      'https://app.example.com:8443/after-login',
      'https://app.example.com.evil.example/after-login',
      'https://user:pw@app.example.com/after-login',
      'https://broker.example.com/',
      'https://broker.example.com/console',
      'https://broker.example.com/docs/',
      'javascript:alert(1)//https://app.example.com/after-login',
      'data:text/html,x',
      '/after-login',
      '//app.example.com/after-login',
      '',
    ])
      refused(bad);
  });

  void test('an origin of the older setting: any path, query kept (as before), other origins still exact', () => {
    const wide = parseGoogleReturnTargets('https://app.example.com/after-login', ['http://localhost:5173'], PUBLIC);
    assert.equal(allowedGoogleReturnUrl('http://LOCALHOST:5173/done?tab=2', wide), 'http://localhost:5173/done?tab=2');
    assert.throws(() => allowedGoogleReturnUrl('https://app.example.com/elsewhere', wide), ReturnUrlRefused);
    assert.throws(() => allowedGoogleReturnUrl('http://user@localhost:5173/done', wide), ReturnUrlRefused);
  });
});
