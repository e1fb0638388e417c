-- The initial schema of the SQLite store. Times are microseconds since the Unix epoch, UTC.
-- JSON values are TEXT. Keep in step with ../postgres/0001_initial.sql.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE memberships (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project TEXT    NOT NULL,
    role    TEXT    NOT NULL CHECK (role IN ('viewer', 'editor', 'admin', 'predictor')),
    PRIMARY KEY (user_id, project)
);

CREATE TABLE api_tokens (
    id          TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project     TEXT,
    description TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

CREATE TABLE models (
    project         TEXT    NOT NULL,
    location        TEXT    NOT NULL,
    model_id        TEXT    NOT NULL,
    display_name    TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    labels          TEXT    NOT NULL,
    etag            TEXT    NOT NULL,
    -- The last version id handed out; never decreases, so ids are not reused.
    version_counter INTEGER NOT NULL,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL,
    PRIMARY KEY (project, location, model_id)
);

CREATE TABLE model_versions (
    project             TEXT    NOT NULL,
    location            TEXT    NOT NULL,
    model_id            TEXT    NOT NULL,
    version_id          INTEGER NOT NULL,
    version_description TEXT    NOT NULL,
    container_spec      TEXT    NOT NULL,
    artifact_uri        TEXT    NOT NULL,
    artifact_sha256     TEXT,
    predict_schemata    TEXT    NOT NULL,
    labels              TEXT    NOT NULL,
    create_time         INTEGER NOT NULL,
    update_time         INTEGER NOT NULL,
    PRIMARY KEY (project, location, model_id, version_id),
    FOREIGN KEY (project, location, model_id)
        REFERENCES models (project, location, model_id) ON DELETE CASCADE
);

-- One row per alias: unique per model by the primary key.
CREATE TABLE model_version_aliases (
    project    TEXT    NOT NULL,
    location   TEXT    NOT NULL,
    model_id   TEXT    NOT NULL,
    alias      TEXT    NOT NULL,
    version_id INTEGER NOT NULL,
    PRIMARY KEY (project, location, model_id, alias),
    FOREIGN KEY (project, location, model_id, version_id)
        REFERENCES model_versions (project, location, model_id, version_id) ON DELETE CASCADE
);
CREATE INDEX model_version_aliases_by_version
    ON model_version_aliases (project, location, model_id, version_id);

CREATE TABLE endpoints (
    project       TEXT    NOT NULL,
    location      TEXT    NOT NULL,
    endpoint_id   TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    access        TEXT    NOT NULL CHECK (access IN ('authenticated', 'public', 'private')),
    traffic_split TEXT    NOT NULL,
    etag          TEXT    NOT NULL,
    create_time   INTEGER NOT NULL,
    update_time   INTEGER NOT NULL,
    PRIMARY KEY (project, location, endpoint_id)
);

CREATE TABLE deployed_models (
    project           TEXT    NOT NULL,
    location          TEXT    NOT NULL,
    endpoint_id       TEXT    NOT NULL,
    deployed_model_id TEXT    NOT NULL,
    model_id          TEXT    NOT NULL,
    version_id        INTEGER NOT NULL,
    display_name      TEXT    NOT NULL,
    spec              TEXT    NOT NULL,
    desired_state     TEXT    NOT NULL
        CHECK (desired_state IN ('deploying', 'deployed', 'undeploying', 'failed')),
    status            TEXT    NOT NULL,
    -- The last revision number handed out for this deployed model.
    revision_counter  INTEGER NOT NULL DEFAULT 0,
    create_time       INTEGER NOT NULL,
    update_time       INTEGER NOT NULL,
    PRIMARY KEY (project, location, endpoint_id, deployed_model_id),
    FOREIGN KEY (project, location, endpoint_id)
        REFERENCES endpoints (project, location, endpoint_id),
    -- A deployed version cannot be deleted (nor its model).
    FOREIGN KEY (project, location, model_id, version_id)
        REFERENCES model_versions (project, location, model_id, version_id)
);
CREATE INDEX deployed_models_by_version
    ON deployed_models (project, location, model_id, version_id);

CREATE TABLE operations (
    project          TEXT    NOT NULL,
    location         TEXT    NOT NULL,
    operation_id     TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    metadata         TEXT    NOT NULL,
    done             BOOLEAN NOT NULL,
    error            TEXT,
    response         TEXT,
    cancel_requested BOOLEAN NOT NULL,
    create_time      INTEGER NOT NULL,
    update_time      INTEGER NOT NULL,
    PRIMARY KEY (project, location, operation_id)
);
CREATE INDEX operations_unfinished ON operations (done, create_time);

CREATE TABLE revisions (
    project           TEXT    NOT NULL,
    location          TEXT    NOT NULL,
    endpoint_id       TEXT    NOT NULL,
    deployed_model_id TEXT    NOT NULL,
    revision          INTEGER NOT NULL,
    manifests         TEXT    NOT NULL,
    source            TEXT    NOT NULL CHECK (source IN ('rendered', 'edited', 'rollback')),
    create_time       INTEGER NOT NULL,
    PRIMARY KEY (project, location, endpoint_id, deployed_model_id, revision),
    FOREIGN KEY (project, location, endpoint_id, deployed_model_id)
        REFERENCES deployed_models (project, location, endpoint_id, deployed_model_id)
        ON DELETE CASCADE
);

CREATE TABLE artifacts (
    id          TEXT    PRIMARY KEY,
    sha256      TEXT    NOT NULL,
    size_bytes  INTEGER NOT NULL,
    uri         TEXT    NOT NULL,
    create_time INTEGER NOT NULL
);
CREATE INDEX artifacts_by_sha256 ON artifacts (sha256);
