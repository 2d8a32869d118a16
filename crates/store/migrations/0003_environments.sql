-- Registered environments (`sluice environment create`). Versions are immutable; the build
-- state lives with the built virtual environment, keyed by the content hash.
CREATE TABLE environments (
    workspace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    description TEXT,
    tags_json   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (workspace, name, version)
);
