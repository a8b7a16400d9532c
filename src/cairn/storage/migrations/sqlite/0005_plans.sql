-- Tracking plans (docs/plans.md): versions per source, violations of checked events, and the
-- quarantine of blocked ones.
CREATE TABLE plan_versions (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_ms INTEGER NOT NULL,
    UNIQUE (source_id, version)
);
CREATE INDEX plan_versions_active ON plan_versions (source_id, active);
CREATE TABLE event_violations (
    seq INTEGER NOT NULL,
    workspace_id INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    event TEXT NOT NULL,
    rule TEXT NOT NULL,
    path TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    plan_version INTEGER,
    action TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (seq, rule, path)
);
CREATE INDEX event_violations_report ON event_violations (workspace_id, at_ms);
CREATE TABLE quarantine (
    seq INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    source_id TEXT NOT NULL,
    plan_version INTEGER,
    violations TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    released_ms INTEGER
);
CREATE INDEX quarantine_open ON quarantine (workspace_id, seq) WHERE released_ms IS NULL
;
-- Naming-rule settings of a workspace (exceptions, extra verbs, severity overrides) for sources
-- without a plan; a plan's own `naming` section wins for its source.
CREATE TABLE naming_settings (
    workspace_id INTEGER PRIMARY KEY,
    config TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
)
