-- PostgreSQL only. `person_events_identifier` served one statement, the unmerge's move of the events
-- of the identifiers it gives back, which now names the person they are on as well and so reads
-- that person's rows through `person_events_timeline`. Its keys are identifier ids, at random
-- across the index: every batch of the pipeline dirtied a page of it per event, and with the index
-- out of shared_buffers each was a miss and, after a checkpoint, a full page in the WAL. Measured
-- (docs/benchmarks.md, 2026-11-30): 150 -> 116 µs of PostgreSQL CPU per event on the lag row's work.
DROP INDEX IF EXISTS person_events_identifier
