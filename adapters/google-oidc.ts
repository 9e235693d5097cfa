/**
 * The broker as an OpenID relying party of Google (or any issuer at BROKER_GOOGLE_ISSUER), on
 * `openid-client`: discovery, the authorization URL (PKCE S256, state, nonce), the code exchange
 * with the id_token checked against the issuer's JWKS, and userinfo. Nothing about OIDC is done by
 * hand here; this file only decides which failures are worth another try.
 */
import { isLoopbackUrl } from '../lib/client-address';
import { readFile } from 'node:fs/promises';
import * as oidc from 'openid-client';
import type { Config } from '../lib/config';
import { AgentKeysError } from '../lib/errors';

/** A provider call failed. `retryable`: a 5xx, a timeout or the network; otherwise (a 4xx, a bad token) it is final. */
export class GoogleProviderError extends AgentKeysError {
  override readonly code: string = 'ERR_GOOGLE_PROVIDER';
  constructor(
    message: string,
    readonly retryable: boolean,
    /** A short machine reason: provider_error, access_denied, invalid_id_token, ... */
    readonly reason: string,
  ) {
    super(message);
  }
}

export interface GoogleIdentityClaims {
  sub: string;
  email?: string;
  email_verified?: boolean;
}

export interface CodeExchangeInput {
  /** The callback's query parameters as the provider sent them (code, state, error, iss, ...). */
  callbackParams: Record<string, string>;
  state: string;
  nonce: string;
  codeVerifier: string;
}

/**
 * The `error` codes an authorization response may carry (RFC 6749 §4.1.2.1, OpenID Connect Core
 * §3.1.2.6). The callback's query is anyone's to write — a link to the callback with a made-up
 * `error` — so only these are named on the person's page and in the flow's history; any other
 * value is not repeated.
 */
const AUTHORIZATION_ERRORS = new Set([
  'invalid_request',
  'unauthorized_client',
  'access_denied',
  'unsupported_response_type',
  'invalid_scope',
  'server_error',
  'temporarily_unavailable',
  'interaction_required',
  'login_required',
  'account_selection_required',
  'consent_required',
  'invalid_request_uri',
  'invalid_request_object',
  'request_not_supported',
  'request_uri_not_supported',
  'registration_not_supported',
]);

function classify(e: unknown, step: string): GoogleProviderError {
  if (e instanceof GoogleProviderError) return e;
  if (e instanceof oidc.AuthorizationResponseError) {
    const code = AUTHORIZATION_ERRORS.has(e.error) ? e.error : "an error code that is not OAuth's";
    return new GoogleProviderError(`the provider refused the sign-in: ${code}`, false, e.error === 'access_denied' ? 'access_denied' : 'provider_refused');
  }
  if (e instanceof oidc.ResponseBodyError) {
    return new GoogleProviderError(
      `${step}: the provider answered ${e.status} ${e.error}`,
      e.status >= 500,
      e.status >= 500 ? 'provider_unavailable' : 'provider_refused',
    );
  }
  const err = e as { name?: string; code?: string; message?: string; cause?: unknown };
  if (err?.code === 'OAUTH_TIMEOUT' || err?.name === 'TimeoutError' || err?.name === 'AbortError') {
    return new GoogleProviderError(`${step}: the provider did not answer in time`, true, 'provider_timeout');
  }
  if (err?.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM') {
    const status = (err.cause as { status?: number } | undefined)?.status;
    if (typeof status === 'number' && status >= 500) return new GoogleProviderError(`${step}: the provider answered ${status}`, true, 'provider_unavailable');
  }
  if (e instanceof TypeError) return new GoogleProviderError(`${step}: could not reach the provider: ${e.message}`, true, 'provider_unreachable');
  // Everything openid-client refuses about the token itself (signature, alg, iss, aud, nonce, exp, ...): final.
  return new GoogleProviderError(`${step}: ${err?.message ?? String(e)}`, false, step === 'userinfo' ? 'invalid_userinfo' : 'invalid_id_token');
}

export class GoogleOidc {
  private discovered?: Promise<oidc.Configuration>;

  constructor(private readonly config: Config) {}

  get enabled(): boolean {
    return this.config.BROKER_GOOGLE_CLIENT_ID !== undefined;
  }

  get redirectUri(): string {
    return this.config.googleRedirectUri;
  }

  /** The discovered configuration, fetched once; a failed discovery is tried again on the next use. */
  configuration(): Promise<oidc.Configuration> {
    this.discovered ??= this.discover().catch((e: unknown) => {
      this.discovered = undefined;
      throw classify(e, 'discovery');
    });
    return this.discovered;
  }

  private async discover(): Promise<oidc.Configuration> {
    const c = this.config;
    if (!c.BROKER_GOOGLE_CLIENT_ID) throw new GoogleProviderError('Google login is not configured (BROKER_GOOGLE_CLIENT_ID)', false, 'not_configured');
    const secret = c.BROKER_GOOGLE_CLIENT_SECRET_PATH ? (await readFile(c.BROKER_GOOGLE_CLIENT_SECRET_PATH, 'utf8')).trim() : c.BROKER_GOOGLE_CLIENT_SECRET;
    const issuer = new URL(c.BROKER_GOOGLE_ISSUER);
    // Plain HTTP only for a provider on this machine (the dev stand-in); production requires https (lib/config.ts).
    const insecure = issuer.protocol === 'http:' && isLoopbackUrl(issuer);
    const configuration = await oidc.discovery(issuer, c.BROKER_GOOGLE_CLIENT_ID, secret, secret ? oidc.ClientSecretPost(secret) : oidc.None(), {
      timeout: c.BROKER_GOOGLE_HTTP_TIMEOUT_SECONDS,
      // The id_token's signature is checked against the issuer's JWKS too, not only trusted for having come over TLS.
      execute: insecure ? [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks] : [oidc.enableNonRepudiationChecks],
    });
    configuration.timeout = c.BROKER_GOOGLE_HTTP_TIMEOUT_SECONDS;
    return configuration;
  }

  /**
   * Fresh state, nonce and PKCE verifier for one login, and the URL that starts it at the provider.
   * `stateTail`, when given, is appended to the random state after a dot: a value the callback must
   * bring back unchanged (the browser app's code challenge, api/routes/google-login.ts). `prompt`
   * (OpenID Connect Core §3.1.2.1), when given, is sent as is.
   */
  async authorization(stateTail?: string, prompt?: 'select_account'): Promise<{ state: string; nonce: string; codeVerifier: string; url: string }> {
    const configuration = await this.configuration();
    const state = stateTail === undefined ? oidc.randomState() : `${oidc.randomState()}.${stateTail}`;
    const nonce = oidc.randomNonce();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(configuration, {
      redirect_uri: this.redirectUri,
      response_type: 'code',
      scope: 'openid email',
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      ...(prompt !== undefined ? { prompt } : {}),
    });
    return { state, nonce, codeVerifier, url: url.href };
  }

  /** The code exchange: the token endpoint, then the id_token checked by openid-client (signature via JWKS, alg, iss, aud, nonce, exp, iat). */
  async exchangeCode(input: CodeExchangeInput): Promise<GoogleIdentityClaims & { accessToken: string }> {
    try {
      const configuration = await this.configuration();
      const current = new URL(this.redirectUri);
      for (const [k, v] of Object.entries(input.callbackParams)) current.searchParams.set(k, v);
      const tokens = await oidc.authorizationCodeGrant(configuration, current, {
        pkceCodeVerifier: input.codeVerifier,
        expectedState: input.state,
        expectedNonce: input.nonce,
        idTokenExpected: true,
      });
      const claims = tokens.claims();
      if (!claims) throw new GoogleProviderError('the provider sent no id_token', false, 'invalid_id_token');
      return {
        sub: claims.sub,
        ...(typeof claims.email === 'string' ? { email: claims.email } : {}),
        ...(claims.email_verified !== undefined ? { email_verified: claims.email_verified === true || claims.email_verified === 'true' } : {}),
        accessToken: tokens.access_token,
      };
    } catch (e) {
      throw classify(e, 'token exchange');
    }
  }

  /** Userinfo for the id_token's subject (openid-client checks the subject matches). */
  async userinfo(accessToken: string, sub: string): Promise<GoogleIdentityClaims> {
    try {
      const configuration = await this.configuration();
      const info = await oidc.fetchUserInfo(configuration, accessToken, sub);
      return {
        sub: info.sub,
        ...(typeof info.email === 'string' ? { email: info.email } : {}),
        ...(info.email_verified !== undefined ? { email_verified: info.email_verified === true || (info.email_verified as unknown) === 'true' } : {}),
      };
    } catch (e) {
      throw classify(e, 'userinfo');
    }
  }
}
