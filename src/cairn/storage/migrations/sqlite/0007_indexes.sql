-- Indexes the benchmarks asked for (docs/benchmarks.md): flattening merges looks persons up by
-- merged_into (a scan of every person per merge without it), and the segment engine reads a
-- person's events by name.
CREATE INDEX persons_merged_into ON persons (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX person_events_person_name ON person_events (person_id, event, timestamp_ms)
