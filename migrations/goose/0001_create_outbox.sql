-- Code generated from ../0001_create_outbox.{up,down}.sql by `go generate ./migrations`. DO NOT EDIT.
-- Edit those files and re-run go generate: migrations/goose_test.go checks this file is current.

-- +goose Up
-- outbox: the producer's table and the relay's bookkeeping.
--
-- Names are unqualified: they are created in the first schema of search_path.
-- The Go migrator (migrations.Up) sets search_path to the configured schema;
-- golang-migrate, goose or psql users set it in the connection (for example
-- `?search_path=myschema` or `SET search_path TO myschema`).

-- The hot table. A row lives here from the producer's commit until the relay
-- settles it (delivered, skipped or dead-lettered), then it leaves, so in steady
-- state the table stays near-empty and every scan of it is O(pending events).
-- No foreign keys: a key into a user table would take KEY SHARE locks on
-- every append. The relay's per-row columns (attempts, next_attempt_at,
-- last_attempt_at, last_error) are in no index, so its updates stay HOT.
CREATE TABLE outbox_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL,
    organization_id text        NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    last_error      text
) WITH (
    fillfactor = 85,
    -- A queue table: every row is deleted soon after it is inserted. Vacuum
    -- it after a fixed number of dead rows, not a fraction of a table that
    -- is near-empty by design.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000
);

-- One lane per organization, read in id order.
CREATE INDEX outbox_events_organization_id_id_idx ON outbox_events (organization_id, id);

-- One row per organization the relay has worked. The lease (leased_until and
-- lease_token) gives one relay process the lane at a time; a holder that
-- outlived its lease cannot settle rows once another holder took a new token.
-- paused_until holds a lane back after Svix answered 429.
CREATE TABLE outbox_lanes (
    organization_id text        PRIMARY KEY,
    lease_token     uuid,
    leased_until    timestamptz,
    leased_by       text,
    paused_until    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);

-- Events Svix rejected for good, or that ran out of attempts. They keep their
-- id and event_id, so a requeued event is still the same Svix eventId.
CREATE TABLE outbox_dead_letters (
    id              bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL,
    organization_id text        NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL,
    last_error      text        NOT NULL,
    status_code     integer,
    response_body   text,
    dead_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_dead_letters_organization_id_id_idx ON outbox_dead_letters (organization_id, id);

-- A compact record of settled events (no payload), kept for a retention window
-- and pruned by the relay: the Svix message id of each delivery, or the fact
-- that an organization had no webhooks and the event was skipped. An
-- append-only log: each event is settled once (it is deleted from
-- outbox_events in the same statement), so it needs no unique key, and its
-- only index is a BRIN on the time it is pruned by, which costs next to
-- nothing to maintain.
CREATE TABLE outbox_deliveries (
    id              bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    organization_id text        NOT NULL,
    event_type      text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('delivered', 'skipped')),
    svix_message_id text,
    attempts        integer     NOT NULL,
    created_at      timestamptz NOT NULL,
    settled_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_deliveries_settled_at_idx ON outbox_deliveries USING brin (settled_at);

-- +goose Down
DROP TABLE IF EXISTS outbox_deliveries;
DROP TABLE IF EXISTS outbox_dead_letters;
DROP TABLE IF EXISTS outbox_lanes;
DROP TABLE IF EXISTS outbox_events;
