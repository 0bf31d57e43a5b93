-- The reconciler's own state, in its own schema (default `runledger_reconciler`), beside its
-- private fold of the read models (the same tables as the projector's, built by the read-model
-- migrations in that schema). Applied only to the reconciler's schema, recorded in
-- `reconciler_migrations`. Everything here is written in the transaction that advances the
-- reconciler's position, so decisions, outgoing events and position never disagree.

-- How far the reconciler has consumed the stream (PostgreSQL, not JetStream, owns it).
CREATE TABLE IF NOT EXISTS reconciler_positions (
    consumer     text PRIMARY KEY,
    stream       text NOT NULL,
    last_seq     bigint NOT NULL,
    events_seen  bigint NOT NULL DEFAULT 0,
    follow_ups   bigint NOT NULL DEFAULT 0
);

-- The transactional outbox: every follow-up event, written with the decision that made it and
-- published by the drainer in `seq` order with `event_id` as `Nats-Msg-Id`.
--   hold_until_seq: published only once the position has reached it. A decision made while
--     catching up waits until the consumer has read up to the stream head of that moment, so a
--     follow-up already in the stream (emitted before a crash or by a previous state) is seen
--     and not published again, even beyond JetStream's duplicate window.
--   seen_seq: the stream sequence where the consumer read this event back; until then the row
--     stands in for it (a queued run is a live path, a requested key exists...).
CREATE TABLE IF NOT EXISTS outbox (
    event_id        uuid PRIMARY KEY,
    seq             bigserial UNIQUE,
    cause_seq       bigint NOT NULL,
    cause_id        uuid NOT NULL,
    rule            text NOT NULL,
    event_type      text NOT NULL,
    subject         text NOT NULL,
    payload         bytea NOT NULL,
    issue_id        uuid,
    run_id          uuid,
    idempotency_key text,
    hold_until_seq  bigint NOT NULL,
    published       boolean NOT NULL DEFAULT false,
    seen_seq        bigint
);
CREATE INDEX IF NOT EXISTS outbox_unpublished_idx ON outbox (seq) WHERE NOT published;
CREATE INDEX IF NOT EXISTS outbox_pending_issue_idx ON outbox (issue_id) WHERE seen_seq IS NULL;
CREATE INDEX IF NOT EXISTS outbox_pending_run_idx ON outbox (run_id) WHERE seen_seq IS NULL;

-- Automatic wakeups granted per issue, by event time: storm control's memory.
CREATE TABLE IF NOT EXISTS reconciler_grants (
    wakeup_id uuid PRIMARY KEY,
    issue_id  uuid NOT NULL,
    reason    text NOT NULL,
    at        timestamptz NOT NULL,
    cause_seq bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS reconciler_grants_issue_idx ON reconciler_grants (issue_id, at);

-- The last refusal a sweep made per issue (one refusal event per distinct `retry_after`).
CREATE TABLE IF NOT EXISTS reconciler_refusals (
    issue_id    uuid PRIMARY KEY,
    retry_after timestamptz,
    cause_seq   bigint NOT NULL
);

-- The reconciler's latest continuation-summary revision per issue (ahead of the fold until the
-- revision comes back through the stream).
CREATE TABLE IF NOT EXISTS reconciler_summaries (
    issue_id        uuid PRIMARY KEY,
    document_id     uuid NOT NULL,
    revision_number integer NOT NULL,
    body            text NOT NULL,
    cause_seq       bigint NOT NULL
);
