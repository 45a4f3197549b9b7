-- One council's part of a week's digests (its meetings, items, documents, notices and source
-- health), stored once and shared by every subscriber's digest record that includes it, so a
-- week's records grow with the number of councils, not with councils x subscribers. The same
-- council and week can have more than one row when its data changed between two runs.
CREATE TABLE digest_sections (
    id INTEGER PRIMARY KEY,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    week TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    contents TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (council_id, week, content_hash)
);
