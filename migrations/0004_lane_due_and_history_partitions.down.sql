-- Back to one unpartitioned history table, keeping its rows.
CREATE TABLE outbox_deliveries_flat (LIKE outbox_deliveries INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO outbox_deliveries_flat SELECT * FROM outbox_deliveries;
DROP TABLE outbox_deliveries;
ALTER TABLE outbox_deliveries_flat RENAME TO outbox_deliveries;
CREATE INDEX outbox_deliveries_settled_at_idx ON outbox_deliveries USING brin (settled_at);

DROP INDEX IF EXISTS outbox_lanes_due_at_idx;
ALTER TABLE outbox_lanes DROP COLUMN IF EXISTS due_at;
