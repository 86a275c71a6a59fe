-- Issue 8: less server CPU per stored frame (docs/telemetry.md, "Ingest cost").
--
-- 1. The hypertables' default time indexes were descending ("time" DESC). Every new row then
--    sorts first, so each insert descends the tree from the root and the leftmost leaf splits in
--    half. Ascending, new rows go to the rightmost leaf: PostgreSQL's cached rightmost-leaf fast
--    path skips the descent, and a split leaves the old page 90 % full. ORDER BY time DESC uses a
--    backward scan of the same index: every query these indexes served, they still serve.
--    Deduplication is off on pose_frames' two indexes: their keys (time; session, time) do not
--    repeat, so the pass PostgreSQL makes over a full leaf before splitting it finds nothing.
DROP INDEX pose_frames_time_idx;
CREATE INDEX pose_frames_time_idx ON pose_frames ("time") WITH (deduplicate_items = off);
ALTER INDEX pose_frames_session_idx SET (deduplicate_items = off);
DO $$
DECLARE
    idx regclass;
BEGIN
    -- ALTER INDEX on the hypertable's index reaches new chunks only: set it on existing ones.
    FOR idx IN
        SELECT i.indexrelid::regclass
        FROM pg_index i
        JOIN pg_inherits h ON h.inhrelid = i.indrelid
        JOIN pg_class c ON c.oid = i.indexrelid
        WHERE h.inhparent = 'pose_frames'::regclass
          AND c.relname LIKE '%pose_frames_session_idx'
    LOOP
        EXECUTE format('ALTER INDEX %s SET (deduplicate_items = off)', idx);
    END LOOP;
END
$$;
DROP INDEX score_windows_time_idx;
CREATE INDEX score_windows_time_idx ON score_windows ("time");
DROP INDEX score_window_params_time_idx;
CREATE INDEX score_window_params_time_idx ON score_window_params ("time");
DROP INDEX pose_rate_1s_bucket_idx;
CREATE INDEX pose_rate_1s_bucket_idx ON pose_rate_1s (bucket);

-- 2. Rows the writer updates in place every transaction (a second's frame counts while it is
--    being filled; a session's stored interval as it grows) get room on their page, so the
--    update is HOT: no new index entries, and the old version is pruned on the page.
ALTER TABLE pose_rate_1s SET (fillfactor = 50);
ALTER TABLE ingest_ranges SET (fillfactor = 50);
