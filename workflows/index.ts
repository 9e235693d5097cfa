// Every workflow the worker runs (the workflow bundle's entry: named exports only, no Node
// modules). One file per workflow; shared types live in definitions.ts.
// Login methods: one line each, the `workflowType` of its entry in lib/login-methods.ts
// (test/login-methods.test.ts checks the two agree).
export { emailCodeLoginWorkflow } from './email-login';
export { walletLoginWorkflow } from './wallet-login';
export { googleLoginWorkflow } from './google-login';
export { teeAccountWorkflow } from './tee-account';
export { deviceAuthorizationWorkflow } from './device-authorization';
export { passkeyCeremonyWorkflow } from './passkey-ceremony';
// The other flows.
export { mintWorkflow } from './mint';
export { purgeExpiredWorkflow } from './maintenance';
export { auditAnchorWorkflow } from './audit-anchor';
export { killSwitchWorkflow } from './kill-switch';
export { approvalWorkflow } from './approval';
// Retired types, registered until their last run has closed (docs/versioning.md).
export { emailLoginRequestWorkflow } from './email-login';
