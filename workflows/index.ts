// Every workflow the worker runs. One file per workflow; shared types live in definitions.ts.
export { emailLoginWorkflow } from './email-login';
