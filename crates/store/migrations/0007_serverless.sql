-- Serverless API endpoints (#6): user-added catalog models, endpoints that name a catalog
-- model (several endpoints share one engine per model), and their token usage per key and hour.
CREATE TABLE catalog_models (
    id          TEXT PRIMARY KEY,
    spec_json   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE serverless_endpoints (
    workspace          TEXT NOT NULL,
    name               TEXT NOT NULL,
    -- Unique per creation.
    uid                TEXT NOT NULL,
    -- The catalog model's id, resolved when the endpoint was created.
    catalog_model      TEXT NOT NULL,
    spec_json          TEXT NOT NULL,
    provisioning_state TEXT NOT NULL,
    failure            TEXT,
    primary_key_enc    TEXT NOT NULL,
    secondary_key_enc  TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);

CREATE TABLE serverless_usage (
    workspace         TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    -- 'primary' or 'secondary'.
    key_name          TEXT NOT NULL,
    -- The hour's start, RFC 3339 UTC.
    hour              TEXT NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, endpoint, key_name, hour)
);
