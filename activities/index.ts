import { createAuditAnchorActivities } from './audit-anchor';
import type { ActivityDeps } from './deps';
import { createDeviceAuthorizationActivities } from './device-authorization';
import { createEmailLoginActivities } from './email-login';
import { createGoogleLoginActivities } from './google-login';
import { createLoginActivities } from './login-completion';
import { createMaintenanceActivities } from './maintenance';
import { createMintActivities } from './mint';
import { createTeeActivities } from './tee-account';
import { createWalletLoginActivities } from './wallet-login';

/** Every activity the worker registers, built from one set of dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createLoginActivities(deps),
    ...createEmailLoginActivities(deps),
    ...createGoogleLoginActivities(deps),
    ...createMintActivities(deps),
    ...createTeeActivities(deps),
    ...createWalletLoginActivities(deps),
    ...createMaintenanceActivities(deps),
    ...createAuditAnchorActivities(deps),
    ...createDeviceAuthorizationActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps } from './deps';
