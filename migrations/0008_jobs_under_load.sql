-- The jobs table under a steady load and a long history (issue 15).
--
-- Every job is written three or more times (enqueue, claim, completion, plus a heartbeat every
-- few seconds while it runs), and finished rows stay until retention deletes them (7 days by
-- default). Two things keep a claim as cheap with 10 million finished rows as with a thousand:
--
-- 1. The claim walks only jobs_claim_idx, a partial index of the queued rows. Finished rows
--    never enter it, so the history does not lengthen the walk. What can lengthen it is dead
--    entries: each claimed row leaves one behind (the row is no longer queued), which a claim
--    skips and marks dead (kill_prior_tuple) but which only VACUUM removes. So VACUUM must run
--    often and at full speed on this table.
-- 2. Heartbeats do not touch any index, so they are HOT updates: the new row version goes on
--    the same page (fillfactor 80 leaves room) and no index gets an entry. They used to update
--    jobs_lease_idx (on lease_expires_at) every time.

-- (2) The rescuer's index holds the running rows by id: a heartbeat changes lease_expires_at,
-- heartbeat_at and updated_at, none of which is indexed now. The running rows are few (at most
-- the fleet's concurrency), so the rescuer reads them all and filters on lease_expires_at.
DROP INDEX jobs_lease_idx;
CREATE INDEX jobs_running_idx ON jobs (id) WHERE state = 'running';

-- (1) Autovacuum for the jobs table (0001 already set fillfactor 80 and 2 % scale factors):
--   autovacuum_vacuum_cost_delay = 0        vacuum this table unthrottled: a queue's vacuum
--                                           that falls behind a drain lets dead claim-index
--                                           entries pile up in front of every claim. The table's
--                                           live part is small, so an unthrottled pass is short.
--   autovacuum_vacuum_threshold = 1000      with the 2 % scale factor: a pass after 1,000 +
--                                           2 % of the rows changed (about 3,000 on a table of
--                                           100,000 rows), not the default 50 + 20 %.
--   autovacuum_vacuum_insert_threshold /    inserts alone (a burst of enqueues) also start a
--   autovacuum_vacuum_insert_scale_factor   pass, which sets the visibility map so index-only
--                                           scans and later passes skip the old pages.
--   autovacuum_analyze_threshold = 1000     fresh statistics for the claim plan after a burst:
--                                           a stale row count can make the planner sort the
--                                           whole backlog instead of walking jobs_claim_idx.
ALTER TABLE jobs SET (
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_threshold = 1000
);
