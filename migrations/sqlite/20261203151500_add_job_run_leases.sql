-- A claimed job tick is leased: the daemon running it renews `claimed_until` while the run goes
-- on. A run left unfinished (`finished_at` NULL) whose lease has run out belonged to a daemon
-- that died; another daemon, or the same one restarted, takes the tick over and runs it again.
ALTER TABLE job_runs ADD COLUMN claimed_until BIGINT;
