-- Same as migrations/sqlite/0007_indexes.sql.
-- Indexes the benchmarks asked for (docs/benchmarks.md): flattening merges looks persons up by
-- merged_into (a scan of every person per merge without it), and the segment engine reads a
-- person's events by name.
CREATE INDEX persons_merged_into ON persons (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX person_events_person_name ON person_events (person_id, event, timestamp_ms)
;
-- cairn_jsonb (0004) without the regular expression when the body holds no `\u0000` (almost always).
CREATE OR REPLACE FUNCTION cairn_jsonb(body bytea) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN position('\\u0000'::bytea IN body) = 0 THEN convert_from(body, 'UTF8')::jsonb
    ELSE regexp_replace(convert_from(body, 'UTF8'), '(?<!\\)((\\\\)*)\\u0000', '\1\\ufffd', 'g')::jsonb
    END
$fn$
