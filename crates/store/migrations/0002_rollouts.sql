-- Progressive rollouts. One row per rollout; the newest per endpoint is "latest".
CREATE TABLE rollouts (
    workspace         TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    id                TEXT NOT NULL,
    spec_json         TEXT NOT NULL,
    state             TEXT NOT NULL,
    step_index        INTEGER NOT NULL,
    -- When the running step began (Unix milliseconds) and the counters it is measured against.
    step_started_ms   INTEGER NOT NULL,
    baseline_json     TEXT NOT NULL,
    -- The server process that took the baseline; another one re-baselines (counters restart).
    server_epoch      TEXT NOT NULL,
    original_traffic_json TEXT NOT NULL,
    history_json      TEXT NOT NULL,
    message           TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    PRIMARY KEY (workspace, endpoint, id)
);
CREATE INDEX rollouts_by_state ON rollouts (state);
