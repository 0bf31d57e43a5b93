-- Why the reconciler published each follow-up: the `decision` extension of its events (rule,
-- cause, the facts the rule looked at, the outcome in a sentence), one row per follow-up event,
-- keyed by its id. Derived from the stream only (`seq` folded it), so a replay gives the same rows.
-- `run_id` is the run the rule looked at; `created_run_id` the run a `run.queued` follow-up creates.
-- The cause's stream sequence is the `seq` of `folded_events` under `cause_id`.
CREATE TABLE IF NOT EXISTS decisions (
    event_id    uuid PRIMARY KEY,
    seq         bigint NOT NULL,
    company_id  uuid NOT NULL,
    issue_id    uuid,
    run_id      uuid,
    created_run_id uuid,
    event_type  text NOT NULL,
    rule        text NOT NULL,
    cause_id    uuid NOT NULL,
    cause_type  text NOT NULL,
    cause_time  timestamptz NOT NULL,
    inputs      jsonb NOT NULL,
    sentence    text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_issue_idx ON decisions (company_id, issue_id, seq DESC);
CREATE INDEX IF NOT EXISTS decisions_run_idx ON decisions (company_id, run_id, seq DESC);
CREATE INDEX IF NOT EXISTS decisions_created_run_idx ON decisions (created_run_id)
    WHERE created_run_id IS NOT NULL;
