-- Compute pools (`sluice compute`): named pools of instances that batch jobs draw from, as
-- Azure ML's amlcompute clusters. The spec is the user's YAML as JSON.
CREATE TABLE computes (
    workspace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    spec_json  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);

-- A job's place in the queue: higher priority first (1 low, 2 medium, 3 high), then arrival.
ALTER TABLE batch_jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 2;
-- The pool the job draws instances from (its deployment's `compute`, frozen at invocation).
ALTER TABLE batch_jobs ADD COLUMN compute TEXT NOT NULL DEFAULT 'cpu-cluster';
