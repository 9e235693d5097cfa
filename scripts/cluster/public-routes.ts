/**
 * What the production nginx site's public server must do with a path of the broker
 * (deploy/nginx/agentkeys-broker.conf; docs/deploy.md): the TEE worker's callbacks (docs/contracts.md
 * §3) pass from the TEE's network only; the codec and the dev routes are for the ops listener
 * alone and are not passed at all; everything else passes. Read by the static check of the site
 * (test/nginx-routes.test.ts) and by the fault run, which walks the routes through a live nginx.
 */
export type PublicExposure = 'tee' | 'ops' | 'public';

const TEE_CALLBACKS = ['/add_wallet', '/get_account_user_id', '/v1/account/check_hyper_agent_address'];

export function publicExposure(path: string): PublicExposure {
  if (path.startsWith('/v3/account/') || TEE_CALLBACKS.includes(path)) return 'tee';
  if (path.startsWith('/codec/') || path.startsWith('/_dev/')) return 'ops';
  return 'public';
}
