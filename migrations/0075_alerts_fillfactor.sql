-- 0075_alerts_fillfactor.sql - alerts pages keep 10 % free (fillfactor 90), so a duplicate's
-- update of its original alert (duplicate_count, last_seen_at, updated_at: no indexed column)
-- stays on the original's page as a heap-only (HOT) update.
--
-- At fillfactor 100 an alert page is full when ingest leaves it, so a duplicate arriving later
-- found no room for the new row version: about half of those updates (47 % heap-only in
-- tests/bench/ingest_bench.py's dup30 stream, 30 % of posts duplicates) moved the row to
-- another page and added an entry to each of the six indexes of alerts, the GIN index of
-- links among them. Ten percent of a page always holds one more version of a row of up to
-- ~800 B, and of larger ones when the page's rows leave enough: the fixtures (~950 B rows)
-- 7 per page instead of 8, ~2 KB rows 3 instead of 4 (inserts stop at 90 %, updates may use
-- the rest). A page whose room was used gets it back by pruning once the older version is
-- dead. Measured in the dup30 stream: 72-92 % heap-only, WAL per
-- alert 3,700 -> 3,500 B. Cost: heap bytes per alert 983 -> 1,092 B for the fixtures (~1 KB
-- rows, 8 -> 7 per page), 2,049 -> 2,731 B for ~2 KB rows (4 -> 3 per page).
--
-- Only pages filled from now on keep the room; existing pages are unchanged until rewritten.
-- The ALTER takes a SHARE UPDATE EXCLUSIVE lock: ingest and updates go on meanwhile.

ALTER TABLE alerts SET (fillfactor = 90);
