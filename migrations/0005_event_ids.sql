-- Every CloudEvent id folded into the read models, with a digest of the event's content, in the
-- batch's transaction. An event whose id is here is skipped whatever its `Nats-Msg-Id` and however
-- late it comes (JetStream deduplicates only within its window); one with other content under a
-- known id is dead-lettered as a conflict. Derived from the stream like every table here (`seq`
-- is the sequence that folded it), so a rebuild gives the same rows.
CREATE TABLE IF NOT EXISTS folded_events (
    event_id uuid PRIMARY KEY,
    digest   bytea NOT NULL,
    seq      bigint NOT NULL
);
