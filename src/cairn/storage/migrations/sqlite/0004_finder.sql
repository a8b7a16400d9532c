-- The finder: event counts by name and time across a workspace, and saved segments whose
-- membership is kept live (docs/finder.md). SQLite reads times and event properties through
-- Python functions registered on every connection (cairn_time, cairn_where).
CREATE INDEX person_events_name ON person_events (workspace_id, event, timestamp_ms);
CREATE INDEX account_events_seq ON account_events (seq);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    condition TEXT NOT NULL,
    text TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    backfill_done INTEGER NOT NULL DEFAULT 0,
    backfill_total INTEGER NOT NULL DEFAULT 0,
    backfill_after INTEGER NOT NULL DEFAULT 0,
    backfill_state TEXT NOT NULL DEFAULT 'pending',
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);
CREATE TABLE segment_members (
    segment_id INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    entered_ms INTEGER NOT NULL,
    PRIMARY KEY (segment_id, person_id)
);
CREATE INDEX segment_members_person ON segment_members (person_id);
-- When time alone may change a person's membership (a window passing).
CREATE TABLE segment_timers (
    segment_id INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    PRIMARY KEY (segment_id, person_id)
);
CREATE INDEX segment_timers_due ON segment_timers (due_ms);
-- Persons whose derived state changed, for the segment engine (written by the pipeline).
CREATE TABLE dirty_persons (
    person_id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
-- Internal signals (entered / left a segment) that automations consume with their own cursor.
CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    segment_id INTEGER,
    person_id INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX signals_workspace ON signals (workspace_id, id)
