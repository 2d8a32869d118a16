-- Batch endpoints, batch deployments and their jobs. A job's mini-batches are its unit of work
-- and of commitment: a mini-batch's rows are written to the job's parts folder first, then the
-- mini-batch is marked Committed here, at most once; a restarted server resumes from the rest.
CREATE TABLE batch_endpoints (
    workspace          TEXT NOT NULL,
    name               TEXT NOT NULL,
    spec_json          TEXT NOT NULL,
    provisioning_state TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);

CREATE TABLE batch_deployments (
    workspace          TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    name               TEXT NOT NULL,
    spec_json          TEXT NOT NULL,
    model_name         TEXT NOT NULL,
    model_version      TEXT NOT NULL,
    generation         INTEGER NOT NULL,
    provisioning_state TEXT NOT NULL,
    message            TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (workspace, endpoint, name)
);

CREATE TABLE batch_jobs (
    workspace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- Arrival order: jobs start first come, first served.
    seq         INTEGER NOT NULL UNIQUE,
    endpoint    TEXT NOT NULL,
    deployment  TEXT NOT NULL,
    -- What to run, frozen at invocation: model and code files, environment, effective settings.
    plan_json   TEXT NOT NULL,
    input_json  TEXT NOT NULL,
    job_dir     TEXT NOT NULL,
    output_dir  TEXT NOT NULL,
    status      TEXT NOT NULL,
    message     TEXT,
    -- The merged append_row file, once written.
    output_file TEXT,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    ended_at    TEXT,
    PRIMARY KEY (workspace, name)
);
CREATE INDEX batch_jobs_by_status ON batch_jobs (status);

CREATE TABLE batch_mini_batches (
    workspace         TEXT NOT NULL,
    job               TEXT NOT NULL,
    idx               INTEGER NOT NULL,
    files_json        TEXT NOT NULL,
    file_count        INTEGER NOT NULL,
    -- Pending, Committed or Failed (every attempt failed).
    state             TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    items             INTEGER NOT NULL DEFAULT 0,
    failed_items      INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    failed_files_json TEXT,
    PRIMARY KEY (workspace, job, idx)
);
