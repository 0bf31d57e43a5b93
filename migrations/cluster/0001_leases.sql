-- Who runs which partition. Instances announce themselves and renew their leases; a lease whose
-- time is up can be taken by another instance, and every batch a partition's writer commits
-- checks, in its own transaction, that the lease is still its own (fencing). Times are the
-- database's: one clock for every instance.
CREATE TABLE instances (
    instance   uuid PRIMARY KEY,
    name       text NOT NULL,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leases (
    -- What is run: a reader's position key, e.g. `runledger-projector`.
    role       text NOT NULL,
    partition  integer NOT NULL,
    -- The instance that owns it (NULL: never owned, or released).
    owner      uuid,
    -- Another instance may take it from this moment on.
    expires_at timestamptz NOT NULL DEFAULT '-infinity',
    -- How many times it changed hands.
    epoch      bigint NOT NULL DEFAULT 0,
    taken_at   timestamptz,
    PRIMARY KEY (role, partition)
);
