-- Browser sessions of the console (tower-sessions records). `data` is the record as JSON;
-- `expires_at` is microseconds since the Unix epoch, UTC. Keep in step with the other database.
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    data       TEXT    NOT NULL,
    expires_at INTEGER  NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
