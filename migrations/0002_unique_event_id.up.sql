-- outbox: one pending row per event id.
--
-- A producer may pass its own event id (outbox.AppendParams.EventID) so that
-- a retry after an ambiguous commit (the COMMIT's reply lost) cannot append
-- the same event twice: the second insert fails with a unique violation,
-- which the producer reports as outbox.ErrDuplicateEventID. Ids are UUIDv7,
-- time-ordered, so the index grows at its right edge like the primary key.
CREATE UNIQUE INDEX outbox_events_event_id_key ON outbox_events (event_id);
