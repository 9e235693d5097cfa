-- When the holder was mailed about the request (activities/approval.ts notifyApprovalHolder): a
-- rerun of the notice (a retry, or the flow's task run again after a worker died) finds it and
-- does not mail again. NULL: not mailed (no address known, or not yet).
ALTER TABLE approvals ADD COLUMN notified_at timestamptz;
