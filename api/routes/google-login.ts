import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GoogleOidc, GoogleProviderError } from '../../adapters/google-oidc';
import { formatUserCode, newUserCode, normaliseUserCode } from '../../lib/device-code';
import { hmacHex, pkceS256Challenge } from '../../lib/digest';
import { isCanonicalBase64url } from '../../lib/compact-jws';
import { BrokerError } from '../../lib/errors';
import { AkFlow, AkStage } from '../../lib/search-attributes';
import { LOGIN_METHODS } from '../../lib/login-methods';
import type { LoginSession } from '../schemas';
import type { googleLoginWorkflow } from '../../workflows/google-login';
import {
  collectSessionUpdate,
  GOOGLE_LOGIN_ID_PREFIX,
  googleCallbackUpdate,
  MAX_CONFIRMATION_ATTEMPTS,
  type GoogleLoginInput,
  type GoogleSessionClaims,
} from '../../workflows/google-login.definitions';
import { fromAnotherOrigin, isTopLevelNavigation } from '../fetch-metadata';
import { allowedGoogleReturnUrl, ReturnUrlRefused } from '../../lib/google-return-url';
import { toBrokerError } from '../flow-errors';
import { asCliGoogleSession } from '../../services/sessions';
import { issueSession } from '../session-issue';
import { commonErrors, errorBody, loginSessionSchema } from '../schemas';

const REQUEST_ID_RE = /^[0-9a-f]{32}$/;
/**
 * What openid-client's randomState() makes (43 base64url characters, with room for other lengths);
 * a browser sign-in's state carries the app's code challenge after a dot.
 */
const STATE_RE = /^[\w-]{16,128}(?:\.([\w-]{43}))?$/;
/** An exchange code: the request id, a dot, 43 base64url characters of one-time secret. */
const EXCHANGE_CODE_RE = /^([0-9a-f]{32})\.([\w-]{43})$/;
/** PKCE (RFC 7636): an S256 challenge is 43 base64url characters; a verifier 43–128 unreserved characters. */
const CODE_CHALLENGE_RE = /^[\w-]{43}$/;
const CODE_VERIFIER_RE = /^[A-Za-z0-9._~-]{43,128}$/;
/** The callback's query values: one of each, none longer than this. */
const MAX_CALLBACK_VALUE = 4096;

const gone = (what: string) => new BrokerError('expired', `${what} has expired, finished or is unknown; start a new sign-in`);

function htmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The callback pages' one stylesheet: readable text, and a code large enough to copy by eye (a click selects it whole). */
const PAGE_STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}' +
  '#confirmation-code{display:inline-block;font:600 2.5rem ui-monospace,monospace;letter-spacing:.15em;' +
  'padding:.5rem 1rem;border:1px solid #999;border-radius:.5rem;user-select:all}';
/** The pages' policy: nothing but that stylesheet, allowed by its hash (no inline script, no other source). */
const PAGE_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(PAGE_STYLE).digest('base64')}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

/**
 * The page a person sees in the browser tab the provider sent back (CLI form, or any refusal). A
 * CLI sign-in's page shows its confirmation code in `#confirmation-code`, between two paragraphs.
 */
function page(reply: FastifyReply, status: number, title: string, text: string, code?: { value: string; after: string }): FastifyReply {
  const shown = code ? `<p><code id="confirmation-code">${htmlEscape(code.value)}</code></p><p>${htmlEscape(code.after)}</p>` : '';
  return reply
    .code(status)
    .header('content-security-policy', PAGE_CSP)
    .type('text/html; charset=utf-8')
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${htmlEscape(title)}</title><style>${PAGE_STYLE}</style></head>` +
        `<body><h1>${htmlEscape(title)}</h1><p>${htmlEscape(text)}</p>${shown}</body></html>\n`,
    );
}

/**
 * Google login (docs/google-login.md): the OIDC authorization code flow with PKCE, one
 * googleLoginWorkflow per sign-in. Browser form: GET google_oauth_login → provider → callback →
 * return_to with a one-time exchange code → POST google_oauth_exchange. CLI form: POST
 * google_oauth_login {"format":"cli"} → the person opens authorize_url → the CLI polls
 * google_oauth_poll. Registered only when BROKER_GOOGLE_CLIENT_ID is set.
 */
export default async function sessionGoogleRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, temporal } = app.deps;
  if (!config.BROKER_GOOGLE_CLIENT_ID) return;
  const google = new GoogleOidc(config);
  const now = () => app.deps.now?.() ?? Date.now();
  const settings: GoogleLoginInput['settings'] = {
    ttlSeconds: config.BROKER_GOOGLE_LOGIN_TTL_SECONDS,
    maxAttempts: config.BROKER_GOOGLE_MAX_ATTEMPTS,
    httpTimeoutSeconds: config.BROKER_GOOGLE_HTTP_TIMEOUT_SECONDS,
  };
  const startPerIp = app.requestLimit({ name: 'google_login:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  const callbackPerIp = app.requestLimit({ name: 'google_callback:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  // A CLI polls about once a second for as long as the person takes: a wider window than the others.
  const collectPerIp = app.requestLimit({ name: 'google_collect:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE * 5, windowMs: 60_000 });

  const requestIdOf = (state: string): string => hmacHex(secrets.hmacSecret, 'google-login-state', state).slice(0, 32);
  const workflowIdOf = (requestId: string): string => GOOGLE_LOGIN_ID_PREFIX + requestId;
  const collectDigest = (requestId: string, secret: string): string => hmacHex(secrets.hmacSecret, 'google-login-collect', workflowIdOf(requestId), secret);
  /**
   * The browser form's exchange code, bound to the code challenge the app sent at the start: the
   * callback folds in the challenge from the flow's own state, the exchange the challenge of the
   * verifier the app presents. A code delivered to an app without that verifier matches nothing.
   */
  const exchangeDigest = (requestId: string, secret: string, challenge: string): string =>
    hmacHex(secrets.hmacSecret, 'google-login-exchange', workflowIdOf(requestId), secret, challenge);
  const bindingDigest = (requestId: string, binding: string): string => hmacHex(secrets.hmacSecret, 'google-login-browser', workflowIdOf(requestId), binding);
  /** The CLI form's confirmation code (normalised, lib/device-code.ts), as the flow keeps it. */
  const confirmationDigest = (requestId: string, code: string): string => hmacHex(secrets.hmacSecret, 'google-login-confirm', workflowIdOf(requestId), code);
  /**
   * The browser form's binding cookie, one per sign-in (several tabs may sign in at once), sent
   * only to the callback path; SameSite=Lax still sends it on the provider's top-level redirect.
   */
  const bindingCookie = (requestId: string) => `ak_google_${requestId}`;
  const secureCookie = config.publicUrl.startsWith('https:') ? '; Secure' : '';
  const callbackPath = new URL(config.googleRedirectUri).pathname;
  function cookieValue(header: string | undefined, name: string): string | undefined {
    for (const part of (header ?? '').split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k === name) return v.join('=');
    }
    return undefined;
  }

  /**
   * Checks return_to against the return URLs (lib/google-return-url.ts: exact, compared after
   * normalisation, no query) and the older bare origins; answers the URL to redirect to.
   */
  function allowedReturnTo(returnTo: string): string {
    try {
      return allowedGoogleReturnUrl(returnTo, config.googleReturnTargets);
    } catch (e) {
      if (e instanceof ReturnUrlRefused) throw new BrokerError('bad_request', e.message);
      throw e;
    }
  }
  if (config.googleReturnTargets.origins.length > 0 && config.isProduction)
    app.log.warn(
      { setting: 'BROKER_GOOGLE_RETURN_ORIGINS', origins: config.googleReturnTargets.origins },
      'BROKER_GOOGLE_RETURN_ORIGINS lets a browser Google sign-in return to any path on these origins, with its exchange code in the query: ' +
        'a page there that logs or forwards query strings would see the codes. List the exact return URLs in BROKER_GOOGLE_RETURN_URLS ' +
        'instead and remove the origins (docs/google-login.md, "Return URLs"). Logged once at start-up.',
    );

  const ownOrigin = new URL(config.publicUrl).origin;
  /**
   * A browser start is a top-level navigation (the app sends the tab, or a window it opens, to this
   * URL). Refused when the browser says a page of another origin made it (Fetch Metadata,
   * api/fetch-metadata.ts) in any other way — an <img>, a fetch, a frame — which a page can make
   * every visitor's browser send, opening a sign-in per visit; and when it returns to this broker's
   * own origin (the console) but came from another origin: the console starts its sign-in from its
   * own page (same-origin), and only its tab holds the PKCE verifier the exchange needs.
   */
  function checkStartOrigin(headers: FastifyRequest['headers'], returnTo: string): void {
    if (!fromAnotherOrigin(headers)) return;
    if (!isTopLevelNavigation(headers))
      throw new BrokerError(
        'forbidden',
        'a Google sign-in is started by sending the browser tab to this URL, not from an image, a frame or a fetch of another site',
      );
    if (new URL(returnTo).origin === ownOrigin)
      throw new BrokerError(
        'forbidden',
        "a sign-in that returns to this broker's console is started from the console itself, not from another site: open the console and sign in there",
      );
  }

  /**
   * Opens a sign-in: fresh state, nonce and PKCE verifier into a new flow; answers the provider URL.
   * The browser form's code challenge rides in the state, which the flow checks on the callback.
   */
  async function begin(
    format: 'browser' | 'cli',
    extra: Pick<GoogleLoginInput, 'return_to'>,
    codeChallenge?: string,
  ): Promise<{ requestId: string; url: string; pollSecret?: string; binding?: string; expiresAt: number }> {
    let authorization: Awaited<ReturnType<GoogleOidc['authorization']>>;
    try {
      // The CLI form's session goes to whoever holds the poll secret, whatever browser completes the
      // sign-in: Google must show its account chooser, so a link opened by someone signed in to
      // Google never completes a stranger's sign-in without a click on a page naming the app.
      authorization = await google.authorization(codeChallenge, format === 'cli' ? 'select_account' : undefined);
    } catch (e) {
      if (e instanceof GoogleProviderError)
        throw new BrokerError('unavailable', 'Google sign-in is not available right now (the provider could not be reached); retry shortly');
      throw e;
    }
    const requestId = requestIdOf(authorization.state);
    const pollSecret = format === 'cli' ? randomBytes(32).toString('base64url') : undefined;
    const binding = format === 'browser' ? randomBytes(32).toString('base64url') : undefined;
    const expiresAt = Math.floor(now() / 1000) + settings.ttlSeconds;
    const input: GoogleLoginInput = {
      state: authorization.state,
      nonce: authorization.nonce,
      code_verifier: authorization.codeVerifier,
      format,
      ...extra,
      ...(pollSecret !== undefined ? { poll_secret_digest: collectDigest(requestId, pollSecret) } : {}),
      ...(binding !== undefined ? { browser_binding_digest: bindingDigest(requestId, binding) } : {}),
      expires_at: expiresAt,
      settings,
    };
    await app.driveFlow(() =>
      temporal.workflow.start<typeof googleLoginWorkflow>('googleLoginWorkflow', {
        workflowId: workflowIdOf(requestId),
        taskQueue: config.BROKER_TASK_QUEUE,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        ...LOGIN_METHODS.google.metadata,
        typedSearchAttributes: [
          { key: AkFlow, value: LOGIN_METHODS.google.flow },
          { key: AkStage, value: 'waiting_callback' },
        ],
      }),
    );
    return { requestId, url: authorization.url, pollSecret, binding, expiresAt };
  }

  /** The one place a Google session becomes a bearer: the shared issuer signs it as it is handed out. */
  const handOut = (claims: GoogleSessionClaims): Promise<LoginSession> => issueSession(app.deps, claims);

  app.get(
    '/v1/session/google_oauth_login',
    {
      config: { loginStep: 'start' },
      schema: {
        tags: ['session'],
        summary: 'Browser sign-in with Google: redirects to the provider',
        description:
          'Starts a sign-in and answers 302 to Google. After the person signs in, the callback sends the browser to return_to ' +
          'with ?exchange_code=…, which the app exchanges once at POST /v1/session/google_oauth_exchange together with the ' +
          'code_verifier whose S256 challenge it sent here (PKCE, RFC 7636: the code is good only in the app that started the ' +
          'sign-in). return_to must be one of BROKER_GOOGLE_RETURN_URLS exactly (scheme, host, port and path, compared after URL ' +
          "normalisation; no query or fragment; the console's <public URL>/console/ always is one), or on an origin of the older " +
          'BROKER_GOOGLE_RETURN_ORIGINS (any path); anything else is 400. A browser request a page of another origin made ' +
          '(Sec-Fetch-Site cross-site or same-site) is 403 unless it is a top-level navigation, and always when return_to is ' +
          "this broker's own origin (the console starts its sign-in from its own page).",
        querystring: z.object({
          return_to: z.string().max(2048, 'return_to is longer than 2048 characters'),
          code_challenge: z
            .string()
            .regex(CODE_CHALLENGE_RE, 'code_challenge must be the S256 challenge of your code_verifier (43 base64url characters)')
            // The last character's two unused bits set spell the same 32 bytes, which no verifier's S256 ever does: a sign-in that could never finish.
            .refine(isCanonicalBase64url, 'code_challenge is not the canonical base64url of 32 bytes (its last character has unused bits set)'),
          code_challenge_method: z.literal('S256', 'code_challenge_method must be S256').optional(),
        }),
        response: { 302: z.null().describe('redirect to the provider'), 403: errorBody, 410: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const returnTo = allowedReturnTo(request.query.return_to);
      checkStartOrigin(request.headers, returnTo);
      await startPerIp(request);
      const started = await begin('browser', { return_to: returnTo }, request.query.code_challenge);
      request.log.info({ flow: 'google_login', request_id: started.requestId, format: 'browser' }, 'google sign-in started');
      void reply.header(
        'set-cookie',
        `${bindingCookie(started.requestId)}=${started.binding}; Path=${callbackPath}; Max-Age=${settings.ttlSeconds}; HttpOnly; SameSite=Lax${secureCookie}`,
      );
      return reply.redirect(started.url, 302);
    },
  );

  app.post(
    '/v1/session/google_oauth_login',
    {
      config: { loginStep: 'start' },
      schema: {
        tags: ['session'],
        summary: 'CLI sign-in with Google: a URL to open and a secret to poll with',
        description:
          'The person opens authorize_url in any browser; the CLI polls POST /v1/session/google_oauth_poll with request_id and ' +
          'poll_secret until it answers 200 (the session, handed out once) or 410. The sign-in lasts until expires_at.',
        body: z.object({ format: z.literal('cli', 'format must be "cli" (browsers use GET with return_to)') }),
        response: {
          200: z.object({ request_id: z.string(), authorize_url: z.string(), poll_secret: z.string(), expires_at: z.number().int().describe('unix seconds') }),
          ...commonErrors,
        },
      },
    },
    async (request) => {
      await startPerIp(request);
      const started = await begin('cli', {});
      request.log.info({ flow: 'google_login', request_id: started.requestId, format: 'cli' }, 'google sign-in started');
      return { request_id: started.requestId, authorize_url: started.url, poll_secret: started.pollSecret as string, expires_at: started.expiresAt };
    },
  );

  app.get(
    '/v1/session/google_oauth_callback',
    {
      config: { loginStep: 'callback' },
      // A repeated or over-long query value is refused on this route's own page, not by the JSON error handler.
      attachValidation: true,
      schema: {
        tags: ['session'],
        summary: 'Where Google sends the browser back (the registered redirect URI)',
        description:
          'Finishes the sign-in named by state: the code exchange, the id_token checks and the session happen before this answers. ' +
          'Browser form: 302 to return_to?exchange_code=…; CLI form: a page showing the confirmation code the person types into ' +
          'the CLI (element #confirmation-code). A refusal is a 4xx page; ' +
          'a callback for a finished, failed or unknown sign-in changes nothing.',
        querystring: z.record(z.string(), z.string().max(MAX_CALLBACK_VALUE)),
        response: {
          200: z.string().describe('text/html'),
          302: z.null(),
          400: z.string(),
          401: z.string(),
          403: z.string(),
          409: z.string(),
          410: z.string(),
          503: z.string(),
        },
      },
    },
    async (request, reply) => {
      const params = request.query;
      try {
        await callbackPerIp(request);
        if (request.validationError)
          throw new BrokerError('bad_request', `each query parameter must appear once and be at most ${MAX_CALLBACK_VALUE} characters long`);
        if (Object.keys(params).length > 20) throw new BrokerError('bad_request', 'too many query parameters');
        const state = params.state;
        if (state === undefined || state === '') throw new BrokerError('bad_request', 'state is missing');
        const stateMatch = STATE_RE.exec(state);
        if (!stateMatch) throw new BrokerError('bad_request', 'state is malformed');
        const requestId = requestIdOf(state);
        const exchangeSecret = randomBytes(32).toString('base64url');
        // Made for every callback: the API learns the form from the flow's answer; a browser sign-in never shows it.
        const confirmationCode = newUserCode();
        const handle = temporal.workflow.getHandle(workflowIdOf(requestId));
        const started = Date.now();
        const binding = cookieValue(request.headers.cookie, bindingCookie(requestId));
        const result = await app.driveFlow(
          () =>
            handle.executeUpdate(googleCallbackUpdate, {
              args: [
                {
                  params,
                  // A CLI sign-in (no challenge in its state) never uses it; nor a browser one begun before states carried one.
                  exchange_code_digest: exchangeDigest(requestId, exchangeSecret, stateMatch[1] ?? ''),
                  ...(binding ? { browser_binding_digest: bindingDigest(requestId, binding) } : {}),
                  confirmation_digest: confirmationDigest(requestId, confirmationCode),
                },
              ],
            }),
          gone('this sign-in'),
        );
        request.log.info({ flow: 'google_login', request_id: requestId, ms: Date.now() - started }, 'google sign-in completed');
        if (result.format === 'browser' && result.return_to) {
          // Checked again against today's list: a sign-in begun before the list changed (an URL
          // removed, or a 1.2.0 start checked by origin only) does not carry its code there.
          let returnTo: string;
          try {
            returnTo = allowedGoogleReturnUrl(result.return_to, config.googleReturnTargets);
          } catch (e) {
            if (!(e instanceof ReturnUrlRefused)) throw e;
            request.log.warn({ flow: 'google_login', request_id: requestId }, 'google sign-in return URL no longer allowed');
            return page(
              reply,
              400,
              'Sign-in failed',
              'bad_request: the page this sign-in was started from is no longer one this broker returns to; start the sign-in again from your app',
            );
          }
          const target = new URL(returnTo);
          target.searchParams.set('exchange_code', `${requestId}.${exchangeSecret}`);
          void reply.header('set-cookie', `${bindingCookie(requestId)}=; Path=${callbackPath}; Max-Age=0; HttpOnly; SameSite=Lax${secureCookie}`);
          return reply.redirect(target.href, 302);
        }
        return page(reply, 200, 'One more step: type this code in your terminal', 'Type this code where you ran agentkeys init google:', {
          value: formatUserCode(confirmationCode),
          after:
            'Never give it to anyone else: whoever types it gets into your AgentKeys account. ' +
            'If you did not start a sign-in in a terminal just now, close this tab; nobody gets in without the code.',
        });
      } catch (e) {
        const err = toBrokerError(e);
        if (!(err instanceof BrokerError)) throw err;
        if (err.kind === 'rate_limited') throw err;
        request.log.info({ flow: 'google_login', error: err.kind, reason: err.extra.body?.reason }, 'google callback refused');
        return page(reply, err.status, 'Sign-in failed', `${err.kind}: ${err.message}`);
      }
    },
  );

  app.post(
    '/v1/session/google_oauth_poll',
    {
      config: { loginStep: 'poll' },
      schema: {
        tags: ['session'],
        summary: 'CLI: is the Google sign-in done?',
        description:
          '202 while the person has not finished. Once they have, the session is handed out once (200) to the right poll_secret ' +
          'together with confirmation_code, the code the callback page showed the person (case and dashes do not matter); ' +
          'without it 400, a wrong one 401 invalid_code with attempts_left, and after ' +
          `${MAX_CONFIRMATION_ATTEMPTS} wrong codes 429 too_many_attempts: the session is never handed out. 410 after the hand-out, ` +
          'or when the sign-in expired or failed. 429 rate_limited (retry_after 1) past 1,500 polls before the person has signed in.',
        body: z.object({
          request_id: z.string().regex(REQUEST_ID_RE, 'request_id is malformed'),
          poll_secret: z.string().min(1).max(128),
          confirmation_code: z
            .string()
            .max(64)
            .refine((v) => normaliseUserCode(v) !== undefined, 'confirmation_code is not a code the page shows (8 letters, XXXX-XXXX)')
            .transform((v) => normaliseUserCode(v) as string)
            .optional(),
        }),
        response: {
          200: loginSessionSchema,
          202: z.object({ status: z.literal('pending') }),
          403: errorBody,
          410: errorBody,
          ...commonErrors,
        },
      },
    },
    async (request, reply) => {
      await collectPerIp(request);
      const { request_id, poll_secret, confirmation_code } = request.body;
      const handle = temporal.workflow.getHandle(workflowIdOf(request_id));
      const collect = {
        secret_digest: collectDigest(request_id, poll_secret),
        ...(confirmation_code !== undefined ? { confirmation_digest: confirmationDigest(request_id, confirmation_code) } : {}),
      };
      const r = await app.driveFlow(() => handle.executeUpdate(collectSessionUpdate, { args: [collect] }), gone('this sign-in'));
      if (r.status === 'pending') return reply.code(202).send({ status: 'pending' });
      request.log.info({ flow: 'google_login', omni_account: r.session.omni_account, format: 'cli' }, 'google session handed out');
      return reply.code(200).send(await handOut(await asCliGoogleSession(app.deps, r.session)));
    },
  );

  app.post(
    '/v1/session/google_oauth_exchange',
    {
      config: { loginStep: 'exchange' },
      schema: {
        tags: ['session'],
        summary: 'Browser app: exchange the one-time code from the redirect for the session',
        description:
          'The exchange_code the callback put on return_to, with the code_verifier whose S256 challenge started the sign-in; ' +
          'accepted once (a second exchange is 410). Another verifier, or a code this app did not start, is 403.',
        body: z.object({
          exchange_code: z.string().regex(EXCHANGE_CODE_RE, 'exchange_code is malformed'),
          code_verifier: z.string().regex(CODE_VERIFIER_RE, 'code_verifier must be 43–128 characters of A–Z a–z 0–9 - . _ ~ (RFC 7636)'),
        }),
        response: { 200: loginSessionSchema, 403: errorBody, 410: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      await collectPerIp(request);
      const [, requestId = '', secret = ''] = EXCHANGE_CODE_RE.exec(request.body.exchange_code) ?? [];
      const secretDigest = exchangeDigest(requestId, secret, pkceS256Challenge(request.body.code_verifier));
      const handle = temporal.workflow.getHandle(workflowIdOf(requestId));
      const r = await app.driveFlow(() => handle.executeUpdate(collectSessionUpdate, { args: [{ secret_digest: secretDigest }] }), gone('this exchange code'));
      // The code is only made once the sign-in succeeded: "pending" cannot happen, but is no session.
      if (r.status !== 'ready') throw gone('this exchange code');
      request.log.info({ flow: 'google_login', omni_account: r.session.omni_account, format: 'browser' }, 'google session handed out');
      return handOut(r.session);
    },
  );
}
