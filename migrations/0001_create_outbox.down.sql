DROP TABLE IF EXISTS outbox_deliveries;
DROP TABLE IF EXISTS outbox_dead_letters;
DROP TABLE IF EXISTS outbox_lanes;
DROP TABLE IF EXISTS outbox_events;
