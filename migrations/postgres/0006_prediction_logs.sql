-- Request-response logging (`predictRequestResponseLoggingConfig`): each endpoint's setting,
-- and the sampled requests and responses of `:predict` and `:rawPredict`, written by the
-- gateways off the request path and read through `GET .../endpoints/{id}/predictionLogs`.
-- At most --prediction-log-retention rows per endpoint are kept (older ones are deleted as new
-- ones are written); deleting an endpoint deletes its rows. `id` orders rows by when they were
-- written (newest highest); `time` is when the request came in, microseconds since the Unix
-- epoch, UTC; `request` and `response` hold each body as JSON (text or base64, its size, and
-- whether it was truncated). Keep in step with the other database.
ALTER TABLE endpoints ADD COLUMN prediction_logging TEXT NOT NULL
    DEFAULT '{"enabled":false,"samplingRate":0.0}';

CREATE TABLE prediction_logs (
    id                BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project           TEXT    NOT NULL,
    location          TEXT    NOT NULL,
    endpoint_id       TEXT    NOT NULL,
    deployed_model_id TEXT    NOT NULL,
    method            TEXT    NOT NULL CHECK (method IN ('predict', 'rawPredict')),
    time              BIGINT  NOT NULL,
    status            BIGINT  NOT NULL,
    latency_micros    BIGINT  NOT NULL,
    request           TEXT    NOT NULL,
    response          TEXT    NOT NULL,
    FOREIGN KEY (project, location, endpoint_id)
        REFERENCES endpoints (project, location, endpoint_id) ON DELETE CASCADE
);
CREATE INDEX prediction_logs_by_endpoint ON prediction_logs (project, location, endpoint_id, id);
