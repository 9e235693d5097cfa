// Every workflow the worker runs. One file per workflow; shared types live in definitions.ts.
export { emailLoginRequestWorkflow } from './email-login';
// Retired per-address email flow: registered until its last runs have closed (docs/versioning.md).
export { emailLoginWorkflow } from './email-login-legacy';
export { walletLoginWorkflow } from './wallet-login';
export { googleLoginWorkflow } from './google-login';
export { teeAccountWorkflow } from './tee-account';
export { mintAwsCredsWorkflow, mintOidcJwtWorkflow } from './mint';
export { purgeExpiredWorkflow } from './maintenance';
export { auditAnchorWorkflow } from './audit-anchor';
export { killSwitchWorkflow } from './kill-switch';
