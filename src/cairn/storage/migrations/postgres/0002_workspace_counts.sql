-- Events per workspace, kept by the appending transaction (see the SQLite migration).
CREATE TABLE workspace_counts (
    workspace_id BIGINT PRIMARY KEY,
    events BIGINT NOT NULL DEFAULT 0
);
INSERT INTO workspace_counts (workspace_id, events)
SELECT workspace_id, count(*) FROM events GROUP BY workspace_id;
