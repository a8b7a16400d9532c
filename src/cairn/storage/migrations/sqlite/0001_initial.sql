-- The event log: indexed columns plus the message as stored (JSON). Only append-ordered keys are
-- indexed, plus the dedupe key, whose leading client-timestamp second keeps inserts near the right
-- edge of the index (see docs/ingest.md, "Deduplication").
CREATE TABLE workspaces (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    write_key TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_ms INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    dedupe_bucket INTEGER NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    timestamp_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX events_dedupe ON events (workspace_id, dedupe_bucket, message_id);
CREATE INDEX events_workspace ON events (workspace_id, seq);
CREATE TABLE rejected (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX rejected_workspace ON rejected (workspace_id, id);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
