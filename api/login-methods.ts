import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { LOGIN_METHOD_IDS, type LoginMethodId } from '../lib/login-methods';
import deviceRoutes from './routes/device';
import sessionEmailRoutes from './routes/email-login';
import sessionGoogleRoutes from './routes/google-login';
import teeCallbackRoutes from './routes/tee-account';
import sessionWalletRoutes from './routes/wallet-login';
import passkeyRoutes from './routes/passkey';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A login route's step, the `step` label of broker_login_requests_total. Default: the path's last segment. */
    loginStep?: string;
    /** Set on every route of a login method when it is registered (registerLoginMethods): its metrics labels. */
    login?: { flow: LoginMethodId; step: string };
  }
}

/**
 * Each login method's HTTP routes: the API layer of the registry in lib/login-methods.ts. Typed by
 * the registry's ids, so a method added there does not compile until its routes are named here.
 */
export const LOGIN_METHOD_ROUTES: Record<LoginMethodId, FastifyPluginAsync> = {
  email: sessionEmailRoutes,
  wallet: sessionWalletRoutes,
  google: sessionGoogleRoutes,
  tee: teeCallbackRoutes,
  device: deviceRoutes,
  passkey: passkeyRoutes,
};

/**
 * Registers every login method's routes, each in a scope that labels its routes for the login
 * metrics (`flow` = the method's id, `step` = the route's `loginStep` or its last path segment), so
 * no route of a login method goes uncounted for want of a table entry.
 */
export async function registerLoginMethods(app: FastifyInstance): Promise<void> {
  for (const id of LOGIN_METHOD_IDS) {
    await app.register(async (scope) => {
      scope.addHook('onRoute', (route) => {
        const step = route.config?.loginStep ?? route.url.split('/').pop() ?? route.url;
        route.config = { ...route.config, login: { flow: id, step } };
      });
      await scope.register(LOGIN_METHOD_ROUTES[id]);
    });
  }
}
