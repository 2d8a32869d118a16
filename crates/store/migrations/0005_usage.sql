-- Usage records, the cost basis: per hour and per deployment (or job, or key), what ran.
-- kind: 'online' (instance_seconds), 'batch' (compute_seconds), 'serverless' (tokens).
CREATE TABLE usage (
    workspace        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    endpoint         TEXT NOT NULL,
    deployment       TEXT NOT NULL,
    -- The API key name for serverless tokens; '' otherwise.
    key_name         TEXT NOT NULL DEFAULT '',
    instance_type    TEXT NOT NULL,
    -- The hour's start, RFC 3339 UTC (e.g. 2026-11-25T19:00:00Z).
    hour             TEXT NOT NULL,
    instance_seconds REAL NOT NULL DEFAULT 0,
    compute_seconds  REAL NOT NULL DEFAULT 0,
    tokens           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, kind, endpoint, deployment, key_name, hour)
);
