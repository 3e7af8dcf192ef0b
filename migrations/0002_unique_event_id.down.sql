DROP INDEX IF EXISTS outbox_events_event_id_key;
