-- When each follow-up entered the outbox, for health: the age of the oldest follow-up that may be
-- published and is not is what tells a stuck drainer from a quiet one. Operational only: no
-- decision reads it, and the dry run does not compare it.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS written_at timestamptz NOT NULL DEFAULT now();
