import type { LoginMethodId } from '../lib/login-methods';
import { createApprovalActivities } from './approval';
import { createAuditAnchorActivities } from './audit-anchor';
import type { ActivityDeps } from './deps';
import { createDeviceAuthorizationActivities } from './device-authorization';
import { createEmailLoginActivities } from './email-login';
import { createGoogleLoginActivities } from './google-login';
import { createLoginActivities } from './login-completion';
import { createKillSwitchActivities } from './kill-switch';
import { createMaintenanceActivities } from './maintenance';
import { createMintActivities } from './mint';
import { createTeeActivities } from './tee-account';
import { createWalletLoginActivities } from './wallet-login';
import { createPasskeyCeremonyActivities } from './passkey-ceremony';

type Factory = (deps: ActivityDeps) => object;
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type Built<T extends Record<string, Factory>> = UnionToIntersection<{ [K in keyof T]: ReturnType<T[K]> }[keyof T]>;

/**
 * Each login method's activities: the activity layer of the registry in lib/login-methods.ts.
 * `satisfies` the registry's ids, so a method added there does not compile until it is named here.
 */
const LOGIN_METHOD_ACTIVITIES = {
  email: createEmailLoginActivities,
  wallet: createWalletLoginActivities,
  google: createGoogleLoginActivities,
  tee: createTeeActivities,
  device: createDeviceAuthorizationActivities,
  passkey: createPasskeyCeremonyActivities,
} satisfies Record<LoginMethodId, Factory>;

/** Activities shared by every login (completeLogin) and those of the other flows. */
const OTHER_ACTIVITIES = {
  login: createLoginActivities,
  mint: createMintActivities,
  maintenance: createMaintenanceActivities,
  auditAnchor: createAuditAnchorActivities,
  killSwitch: createKillSwitchActivities,
  approval: createApprovalActivities,
} satisfies Record<string, Factory>;

function build<T extends Record<string, Factory>>(factories: T, deps: ActivityDeps): Built<T> {
  return Object.assign({}, ...Object.values(factories).map((create) => create(deps))) as Built<T>;
}

/** Every activity the worker registers, built from one set of dependencies. */
export function createActivities(deps: ActivityDeps): Built<typeof LOGIN_METHOD_ACTIVITIES> & Built<typeof OTHER_ACTIVITIES> {
  return { ...build(LOGIN_METHOD_ACTIVITIES, deps), ...build(OTHER_ACTIVITIES, deps) };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps } from './deps';
