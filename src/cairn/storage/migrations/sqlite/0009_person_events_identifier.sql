-- As PostgreSQL's 0008: `person_events_identifier` served only the unmerge's move of an
-- identifier's events, which names the person they are on and so reads them through
-- `person_events_timeline`. Its keys are identifier ids, at random across the index: every batch
-- of the pipeline wrote a page of it per event, into the WAL at the commit (measured on the
-- pipeline's throughput row: docs/benchmarks.md, 2026-11-30).
DROP INDEX IF EXISTS person_events_identifier
