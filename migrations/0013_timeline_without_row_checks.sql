-- Timeline entries no longer check, one by one, that their execution exists. Every entry is
-- written by the statement that creates or changes its execution, or names one its writer
-- read before, and executions are never deleted, so the check could not fail; it cost a
-- trigger, a lookup and a lock of the execution's row per entry — three per execution, in
-- the statements every execution goes through. (Were executions ever deleted, their entries
-- must be deleted with them: nothing cascades any more.)
ALTER TABLE execution_events DROP CONSTRAINT IF EXISTS execution_events_execution_id_fkey;
