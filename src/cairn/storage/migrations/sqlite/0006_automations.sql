-- Automations (docs/automations.md): definitions and their versions, durable runs and their steps,
-- webhook deliveries with every attempt, and in-app messages. A run keeps the version it started
-- on; its position is a step path ("2/then/0") and `due_ms` says when the engine next looks at it.
CREATE TABLE automations (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- events with a larger seq (accepted after it went live) trigger it
    live_after_seq INTEGER,
    live_since_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
);
CREATE TABLE automation_versions (
    automation_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'api',
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (automation_id, version)
);
CREATE TABLE automation_runs (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    automation_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    -- active (due to step), waiting (a wait or wait_until), delivering (a webhook in flight),
    -- then completed, converted, exited or failed
    state TEXT NOT NULL,
    step TEXT,
    step_ms INTEGER NOT NULL,
    due_ms INTEGER,
    trigger TEXT NOT NULL,
    error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    ended_ms INTEGER
);
CREATE INDEX automation_runs_due ON automation_runs (due_ms) WHERE due_ms IS NOT NULL;
CREATE INDEX automation_runs_person ON automation_runs (person_id, state);
CREATE INDEX automation_runs_automation ON automation_runs (automation_id, person_id, created_ms);
CREATE TABLE automation_run_steps (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    at_ms INTEGER NOT NULL
);
CREATE INDEX automation_run_steps_run ON automation_run_steps (run_id, id);
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    automation_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- pending (due at next_ms), sending (claimed until next_ms), delivered, or dead (gave up;
    -- replay makes it pending again)
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER,
    last_status INTEGER,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    delivered_ms INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_ms)
    WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (workspace_id, status, id);
CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
CREATE TABLE in_app_messages (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    automation_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    content TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    seen_ms INTEGER,
    UNIQUE (run_id, step)
);
CREATE INDEX in_app_messages_person ON in_app_messages (person_id, id);
-- The key each workspace signs its webhooks with (X-Cairn-Signature), made on first use.
CREATE TABLE webhook_secrets (
    workspace_id INTEGER PRIMARY KEY,
    secret TEXT NOT NULL,
    created_ms INTEGER NOT NULL
)
