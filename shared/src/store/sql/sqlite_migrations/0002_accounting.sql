-- Mirror of migrations/0002_accounting.sql.
ALTER TABLE executions ADD COLUMN usage TEXT;
ALTER TABLE executions ADD COLUMN sandboxed INTEGER;
ALTER TABLE workers ADD COLUMN sandbox TEXT NOT NULL DEFAULT 'none';
