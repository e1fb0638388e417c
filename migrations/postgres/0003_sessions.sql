-- Browser sessions of the console (tower-sessions records). `data` is the record as JSON;
-- `user_id` the signed-in user, if any (a new password or a disabled user ends their sessions);
-- `expires_at` is microseconds since the Unix epoch, UTC. Keep in step with the other database.
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    data       TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_user ON sessions (user_id);
