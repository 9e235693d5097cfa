import { createAuditAnchorActivities } from './audit-anchor';
import type { ActivityDeps } from './deps';
import { createEmailLoginActivities } from './email-login';
import { createGoogleLoginActivities } from './google-login';
import { createLoginActivities } from './login-completion';
import { createKillSwitchActivities } from './kill-switch';
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
    ...createKillSwitchActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps } from './deps';
