-- Events per workspace, kept by the appending transaction, so the debugger and the stats API
-- count without scanning the log.
CREATE TABLE workspace_counts (
    workspace_id INTEGER PRIMARY KEY,
    events INTEGER NOT NULL DEFAULT 0
);
INSERT INTO workspace_counts (workspace_id, events)
SELECT workspace_id, count(*) FROM events GROUP BY workspace_id;
