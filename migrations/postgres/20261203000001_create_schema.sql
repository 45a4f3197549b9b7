-- The whole first-version schema. Times are UTC seconds since the epoch (BIGINT) so that both
-- backends store and compare them the same way; local dates and times sit beside them as text.
-- Flags are 0/1 integers on both backends (no BOOLEAN) so one decoding path serves both.

CREATE TABLE councils (
    id BIGSERIAL PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    gss_code TEXT NOT NULL,
    nation TEXT NOT NULL,
    council_type TEXT NOT NULL,
    platform TEXT NOT NULL,
    registry_base_url TEXT,
    base_url TEXT,
    support TEXT NOT NULL DEFAULT 'limited' CHECK (support IN ('limited', 'full')),
    support_pinned BIGINT NOT NULL DEFAULT 0,
    support_changed_at BIGINT,
    below_demote_since BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sources (
    id BIGSERIAL PRIMARY KEY,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('moderngov', 'ical', 'feed')),
    url TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    last_poll_at BIGINT,
    last_success_at BIGINT,
    last_error_at BIGINT,
    last_error TEXT,
    failing_since BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    next_poll_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (council_id, kind, url)
);

CREATE TABLE http_cache (
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source_id, url)
);

CREATE TABLE committees (
    id BIGSERIAL PRIMARY KEY,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    external_id TEXT NOT NULL,
    title TEXT NOT NULL,
    category TEXT,
    expired BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    UNIQUE (source_id, external_id)
);

CREATE TABLE meetings (
    id BIGSERIAL PRIMARY KEY,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    committee_id BIGINT REFERENCES committees (id) ON DELETE SET NULL,
    external_id TEXT NOT NULL,
    committee_title TEXT NOT NULL,
    title TEXT NOT NULL,
    local_date TEXT NOT NULL,
    local_time TEXT,
    timezone TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT,
    all_day BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    location TEXT,
    url TEXT,
    parse_warning TEXT,
    detail_fetched_at BIGINT,
    content_hash TEXT NOT NULL,
    withdrawn_at BIGINT,
    first_seen_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (source_id, external_id)
);
CREATE INDEX meetings_council_starts ON meetings (council_id, starts_at);

CREATE TABLE agenda_items (
    id BIGSERIAL PRIMARY KEY,
    meeting_id BIGINT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    external_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    number TEXT,
    title TEXT NOT NULL,
    text_html TEXT,
    text_plain TEXT,
    minutes_html TEXT,
    minutes_plain TEXT,
    UNIQUE (meeting_id, external_id)
);

CREATE TABLE documents (
    id BIGSERIAL PRIMARY KEY,
    meeting_id BIGINT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    agenda_item_external_id TEXT,
    external_id TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT NOT NULL,
    published_on TEXT,
    first_seen_at BIGINT NOT NULL,
    UNIQUE (meeting_id, external_id)
);

CREATE TABLE attendees (
    id BIGSERIAL PRIMARY KEY,
    meeting_id BIGINT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    external_id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT,
    attendance TEXT,
    party TEXT,
    UNIQUE (meeting_id, external_id)
);

CREATE TABLE meeting_changes (
    id BIGSERIAL PRIMARY KEY,
    meeting_id BIGINT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    seen_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX meeting_changes_meeting ON meeting_changes (meeting_id, seen_at);

CREATE TABLE notices (
    id BIGSERIAL PRIMARY KEY,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    external_id TEXT NOT NULL,
    title TEXT NOT NULL,
    link TEXT,
    published_at BIGINT,
    summary_html TEXT,
    summary_plain TEXT,
    first_seen_at BIGINT NOT NULL,
    UNIQUE (source_id, external_id)
);

CREATE TABLE subscribers (
    id BIGSERIAL PRIMARY KEY,
    email TEXT UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('resident', 'professional')),
    organisation TEXT,
    hard_failures BIGINT NOT NULL DEFAULT 0,
    suppressed_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE subscriptions (
    id BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'unsubscribed')),
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    unsubscribed_at BIGINT,
    UNIQUE (subscriber_id, council_id)
);
CREATE INDEX subscriptions_council_state ON subscriptions (council_id, state);

CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    subscription_id BIGINT REFERENCES subscriptions (id) ON DELETE CASCADE,
    subscriber_id BIGINT REFERENCES subscribers (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE enablement_requests (
    id BIGSERIAL PRIMARY KEY,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    subscriber_id BIGINT REFERENCES subscribers (id) ON DELETE SET NULL,
    name TEXT,
    organisation TEXT,
    email TEXT,
    message TEXT,
    represents_council BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    reason TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);

CREATE TABLE promotions (
    id BIGSERIAL PRIMARY KEY,
    council_id BIGINT NOT NULL REFERENCES councils (id) ON DELETE CASCADE,
    happened_at BIGINT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('promote', 'demote')),
    score DOUBLE PRECISION NOT NULL,
    rank BIGINT,
    reason TEXT NOT NULL,
    request_id BIGINT REFERENCES enablement_requests (id) ON DELETE SET NULL
);

CREATE TABLE digests (
    id BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT REFERENCES subscribers (id) ON DELETE CASCADE,
    week TEXT NOT NULL,
    built_at BIGINT NOT NULL,
    contents TEXT NOT NULL,
    UNIQUE (subscriber_id, week)
);

CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    subscriber_id BIGINT REFERENCES subscribers (id) ON DELETE SET NULL,
    digest_id BIGINT REFERENCES digests (id) ON DELETE SET NULL,
    recipient TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'retrying', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    leased_by TEXT,
    last_error TEXT,
    message_id TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);

CREATE TABLE job_runs (
    job TEXT NOT NULL,
    tick_at BIGINT NOT NULL,
    claimed_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT,
    PRIMARY KEY (job, tick_at)
);
