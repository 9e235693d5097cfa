// Every workflow the worker runs. One file per workflow; shared types live in definitions.ts.
export { emailLoginRequestWorkflow } from './email-login';
export { walletLoginWorkflow } from './wallet-login';
export { googleLoginWorkflow } from './google-login';
export { teeAccountWorkflow } from './tee-account';
export { mintAwsCredsWorkflow, mintOidcJwtWorkflow } from './mint';
export { purgeExpiredWorkflow } from './maintenance';
export { auditAnchorWorkflow } from './audit-anchor';
