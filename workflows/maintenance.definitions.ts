/** Ids of the housekeeping Schedule and the workflow it starts (shared by worker wiring and tests). */
export const PURGE_SCHEDULE_ID = 'agentkeys-purge-expired';
export const PURGE_WORKFLOW_ID = 'maintenance/purge-expired';
