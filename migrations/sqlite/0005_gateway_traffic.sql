-- What each gateway process counted per deployed model (counters since that process started),
-- refreshed every second, so that the controller of another process (split roles) scales on
-- request rate and wakes models scaled to zero. `update_time` is microseconds since the Unix
-- epoch, UTC; rows of gateways that stopped reporting are ignored, then deleted. Keep in step
-- with the other database.
CREATE TABLE gateway_traffic (
    gateway_id        TEXT    NOT NULL,
    deployed_model_id TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    in_flight         INTEGER NOT NULL,
    waiting           INTEGER NOT NULL,
    update_time       INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, deployed_model_id)
);
