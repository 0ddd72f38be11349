-- Per-execution accounting from the container engine, whether the execution was isolated,
-- and what isolation a worker enforces.
ALTER TABLE executions ADD COLUMN usage JSONB;
ALTER TABLE executions ADD COLUMN sandboxed BOOLEAN;
ALTER TABLE workers ADD COLUMN sandbox TEXT NOT NULL DEFAULT 'none';
