-- Desired state of every resource. Specs are stored as the JSON the API accepted, so the
-- store needs no change when a spec gains a field.
CREATE TABLE models (
    workspace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    model_type  TEXT NOT NULL,
    artifact    TEXT NOT NULL,
    path        TEXT NOT NULL,
    description TEXT,
    tags_json   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (workspace, name, version)
);

CREATE TABLE online_endpoints (
    workspace          TEXT NOT NULL,
    name               TEXT NOT NULL,
    uid                TEXT NOT NULL,
    spec_json          TEXT NOT NULL,
    provisioning_state TEXT NOT NULL,
    primary_key_enc    TEXT NOT NULL,
    secondary_key_enc  TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);

CREATE TABLE online_deployments (
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
