-- Storm control's deferrals: an automatic follow-up beyond the original's bounded flows that
-- the backoff holds back. Each is a fact in the stream (`issue.follow_up_deferred`, whose event
-- is kept here whole) and stays open until the first tick at or after `due_at` publishes its
-- follow-up unchanged or closes it as moot (`issue.follow_up_deferral_closed`, `closed_seq` the
-- deciding tick's sequence). Written in the transaction that advances the position.
CREATE TABLE IF NOT EXISTS reconciler_deferrals (
    deferral_id uuid PRIMARY KEY,
    issue_id    uuid NOT NULL,
    due_at      timestamptz NOT NULL,
    event       bytea NOT NULL,
    cause_seq   bigint NOT NULL,
    closed_seq  bigint
);
CREATE INDEX IF NOT EXISTS reconciler_deferrals_open_idx
    ON reconciler_deferrals (issue_id) WHERE closed_seq IS NULL;

-- The comment saying storm control's ceiling holds an issue's automatic wakeups back: one per
-- issue until `until`, not one per refusal.
CREATE TABLE IF NOT EXISTS reconciler_ceiling_notices (
    issue_id  uuid PRIMARY KEY,
    until     timestamptz NOT NULL,
    cause_seq bigint NOT NULL
);
