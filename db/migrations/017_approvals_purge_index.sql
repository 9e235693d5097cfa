-- The hourly purge (db/approvals.ts, purgeFinishedApprovals) picks finished requests by the latest
-- of their times; with this index it reads those rows only, not the whole table every hour.
CREATE INDEX approvals_finished_by ON approvals ((GREATEST(expires_at, decided_at, collected_at)));
