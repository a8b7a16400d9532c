-- People and accounts: state derived from the log by the pipeline (docs/people.md). Everything here
-- but `identity_blocks` and the sources' identity columns can be rebuilt by replaying the log.
-- Person and identifier ids are allocated by the pipeline (under its cursor's version check), so a
-- batch can link new identifiers to new persons before it writes anything.
ALTER TABLE sources ADD COLUMN identity_secret TEXT;
ALTER TABLE sources ADD COLUMN require_user_hash INTEGER NOT NULL DEFAULT 0;
-- The pipeline's cursor row also carries a version (every write to derived state outside the
-- runner's own batch bumps it) and a lease (which worker runs).
ALTER TABLE cursors ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cursors ADD COLUMN holder TEXT;
ALTER TABLE cursors ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cursors ADD COLUMN high_water INTEGER NOT NULL DEFAULT 0;
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    merged_into INTEGER,
    traits TEXT NOT NULL DEFAULT '{}',
    trait_ts TEXT NOT NULL DEFAULT '{}',
    event_counts TEXT NOT NULL DEFAULT '{}',
    first_seen_ms INTEGER,
    last_seen_ms INTEGER,
    events INTEGER NOT NULL DEFAULT 0,
    revenue_micros INTEGER NOT NULL DEFAULT 0,
    user_ids INTEGER NOT NULL DEFAULT 0,
    identifiers INTEGER NOT NULL DEFAULT 0,
    identifiers_refused INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX persons_last_seen ON persons (workspace_id, last_seen_ms, id) WHERE merged_into IS NULL;
CREATE TABLE identifiers (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    person_id INTEGER NOT NULL,
    via_id INTEGER,
    seq INTEGER NOT NULL,
    linked_ms INTEGER NOT NULL,
    UNIQUE (workspace_id, kind, value)
);
CREATE INDEX identifiers_person ON identifiers (person_id);
CREATE INDEX identifiers_via ON identifiers (via_id) WHERE via_id IS NOT NULL;
-- One row per event attributed to a person: by its primary identifier (the user id, else the
-- anonymous id), so merges and unmerges move rows by identifier. Doubles as the applied set:
-- an event with a row here was applied and is skipped on replay.
CREATE TABLE person_events (
    seq INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    identifier_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    timestamp_ms INTEGER NOT NULL
);
CREATE INDEX person_events_timeline ON person_events (person_id, timestamp_ms, seq);
CREATE INDEX person_events_identifier ON person_events (identifier_id);
CREATE TABLE merges (
    id TEXT PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    survivor_id INTEGER NOT NULL,
    merged_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    message_id TEXT,
    seq INTEGER,
    at_ms INTEGER NOT NULL,
    identifier_ids TEXT NOT NULL,
    undone_ms INTEGER
);
CREATE INDEX merges_survivor ON merges (survivor_id);
-- Pairs of persons an unmerge separated: never merged again automatically.
CREATE TABLE identity_blocks (
    workspace_id INTEGER NOT NULL,
    person_a INTEGER NOT NULL,
    person_b INTEGER NOT NULL,
    merge_id TEXT NOT NULL,
    PRIMARY KEY (person_a, person_b)
);
-- A person's own history: trait changes and joined accounts (tied to the identifier whose event
-- caused them, so they move with it), merges and unmerges (identifier_id NULL, never moved).
CREATE TABLE person_history (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    identifier_id INTEGER,
    seq INTEGER,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX person_history_timeline ON person_history (person_id, at_ms, id);
CREATE INDEX person_history_identifier ON person_history (identifier_id) WHERE identifier_id IS NOT NULL;
CREATE TABLE accounts (
    workspace_id INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    traits TEXT NOT NULL DEFAULT '{}',
    trait_ts TEXT NOT NULL DEFAULT '{}',
    event_counts TEXT NOT NULL DEFAULT '{}',
    first_seen_ms INTEGER,
    last_seen_ms INTEGER,
    events INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, group_id)
);
CREATE INDEX accounts_last_seen ON accounts (workspace_id, last_seen_ms, group_id);
CREATE TABLE account_members (
    workspace_id INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    person_id INTEGER NOT NULL,
    joined_ms INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, group_id, person_id)
);
CREATE INDEX account_members_person ON account_members (person_id);
-- The account's own events: group calls and events carrying context.groupId.
CREATE TABLE account_events (
    workspace_id INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, group_id, seq)
);
CREATE INDEX account_events_timeline ON account_events (workspace_id, group_id, timestamp_ms, seq);
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    stage TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    at_ms INTEGER NOT NULL,
    resolved_ms INTEGER,
    UNIQUE (seq)
);
CREATE INDEX dead_letters_open ON dead_letters (workspace_id, id) WHERE resolved_ms IS NULL
