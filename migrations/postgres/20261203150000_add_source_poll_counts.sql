-- Running totals of polls and failed polls per source, for the /metrics counters.
ALTER TABLE sources ADD COLUMN polls_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN failures_total BIGINT NOT NULL DEFAULT 0;
