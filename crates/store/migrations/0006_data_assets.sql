-- Registered data assets (`sluice data create`): an uploaded folder or file that batch jobs
-- name as `azureml:NAME:VERSION` or `azureml:NAME@latest`. Versions are immutable.
CREATE TABLE data_assets (
    workspace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    data_type   TEXT NOT NULL,
    artifact    TEXT NOT NULL,
    path        TEXT NOT NULL,
    description TEXT,
    tags_json   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (workspace, name, version)
);
