// Every workflow the worker runs. One file per workflow; shared types live in definitions.ts.
export { emailLoginWorkflow } from './email-login';
export { walletLoginWorkflow } from './wallet-login';
export { teeAccountWorkflow } from './tee-account';
export { mintAwsCredsWorkflow, mintOidcJwtWorkflow } from './mint';
export { purgeExpiredWorkflow } from './maintenance';
