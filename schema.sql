-- storemon's one schema definition. Applied idempotently on every open (see storemon/db.py).
-- Times are integer microseconds since the Unix epoch (UTC) unless a column says otherwise.

-- Each store id from the files, stored once; every other table keys stores by `id`.
CREATE TABLE IF NOT EXISTS stores (
    id INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL UNIQUE
);

-- Status polls in time partitions: one row per (UTC day, store) holding that day's poll instants (int64
-- little-endian microseconds, sorted, unique) and statuses (one byte each, 1 = active), with the day's last poll.
-- A report reads the days its windows cover plus each store's last poll before them (via poll_days_store).
-- The table and its encoding belong to storemon/polls.py.
CREATE TABLE IF NOT EXISTS poll_days (
    day INTEGER NOT NULL,
    store INTEGER NOT NULL REFERENCES stores(id),
    polls INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    last_active INTEGER NOT NULL,
    ts BLOB NOT NULL,
    active BLOB NOT NULL,
    PRIMARY KEY (day, store)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS poll_days_store ON poll_days(store, day);

-- Business hours as the file says them, local time of day in microseconds (end may be 86400000000 for 24:00).
CREATE TABLE IF NOT EXISTS business_hours (
    store INTEGER NOT NULL REFERENCES stores(id),
    day INTEGER NOT NULL CHECK (day BETWEEN 0 AND 6),
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS business_hours_store ON business_hours(store);

-- Time zone of each store as the file says it (an unknown name is kept; the engine falls back to the default).
CREATE TABLE IF NOT EXISTS zones (
    store INTEGER PRIMARY KEY REFERENCES stores(id),
    timezone_str TEXT NOT NULL
);

-- Each polled store's state at the data's latest instant: its latest poll and status, and whether its business hours
-- have it open then (1). Worked out again by every ingest that changes the data (storemon/state.py).
CREATE TABLE IF NOT EXISTS store_state (
    store INTEGER PRIMARY KEY REFERENCES stores(id),
    last_poll_us INTEGER NOT NULL,
    last_active INTEGER NOT NULL,
    open_now INTEGER NOT NULL
);

-- What was read of each source file, so that an unchanged file is skipped and a grown one read from its end.
CREATE TABLE IF NOT EXISTS source_files (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    consumed INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    header TEXT NOT NULL
);

-- One row per ingest (refresh): when, what it read per file, how it ended, and which process ran it (host:pid).
CREATE TABLE IF NOT EXISTS ingest_runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    data_version INTEGER,
    files TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    owner TEXT
);

-- Key/value facts: schema_version (see storemon/db.py), data_version (bumped by every ingest that changed
-- something), max_poll_ts, poll_count, polled_stores, retained_from (polls before it were pruned).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
);

-- Report jobs: their parameters, progress and, once complete, the CSV.
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    requested_as_of TEXT,
    interpolation TEXT NOT NULL,
    as_of TEXT,
    data_version INTEGER,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    row_count INTEGER,
    csv TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS reports_status ON reports(status);
CREATE INDEX IF NOT EXISTS reports_created ON reports(created);

-- Incidents (docs/SPEC.md section 7): a store open and inactive, from `start` to `end` (NULL while ongoing).
-- Kept up to date by every refresh (storemon/incidents.py).
CREATE TABLE IF NOT EXISTS incidents (
    store INTEGER NOT NULL REFERENCES stores(id),
    start INTEGER NOT NULL,
    "end" INTEGER,
    PRIMARY KEY (store, start)
);
CREATE INDEX IF NOT EXISTS incidents_start ON incidents(start);

CREATE INDEX IF NOT EXISTS incidents_ongoing ON incidents(store) WHERE "end" IS NULL;

-- The ongoing incidents whose "down" message reached a notification target (storemon/alerts.py): one row per incident
-- and target (a digest of its apprise URL), deleted once the "up" message reached it too; so each message reaches
-- each target once, across restarts.
CREATE TABLE IF NOT EXISTS alerts (
    store INTEGER NOT NULL,
    start INTEGER NOT NULL,
    target TEXT NOT NULL,
    sent TEXT NOT NULL,
    PRIMARY KEY (store, start, target)
);
