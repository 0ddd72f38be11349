-- Fewer index entries per execution. Every claim and every result rewrites its execution's row,
-- and PostgreSQL then adds an entry for the new row version to every index whose predicate it
-- matches: before this migration 20 entries over an execution's three writes, and a lease
-- renewal took 9 more (the lease's own index). After it, 15, and a renewal changes no indexed
-- column, so it can be a HOT update that adds none.
--
-- * The live executions (queued or running) get one index, by status, bot and pool, instead of
--   four (leases, running per bot, running per pool, live per bot). Reaping expired leases and
--   counting a pool's running executions read every running execution through it; there are
--   at most as many as workers have slots.
-- * The status index leaves out succeeded executions, the great majority, and running ones,
--   which the live index holds. Listing by status names the statuses as literals, so the
--   planner can prove these partial indexes apply; a list of succeeded executions is read in
--   id order, where they are most of the rows anyway.
-- * The idempotency index stays whole for now: binaries before this one name no predicate in
--   their ON CONFLICT clause, and would fail against a partial index. Those of this version
--   do (`WHERE idempotency_key IS NOT NULL`), so a later migration can leave out executions
--   without a key once no older binary runs.
--
-- The new indexes are built first: writes of executions wait while they are built, reads go
-- on. The old ones are dropped at the end, which holds reads too, only until the commit.
CREATE INDEX executions_live ON executions (status, bot_id, pool)
    WHERE status IN ('queued', 'running');
CREATE INDEX executions_status_unfinished ON executions (status, id)
    WHERE status IN ('queued', 'failed', 'timed_out', 'cancelled');

DROP INDEX executions_leases;
DROP INDEX executions_bot_running;
DROP INDEX executions_pool_running;
DROP INDEX executions_bot_live;
DROP INDEX executions_status;
ALTER INDEX executions_status_unfinished RENAME TO executions_status;
