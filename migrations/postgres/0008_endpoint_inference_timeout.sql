-- clientConnectionConfig.inferenceTimeout of an endpoint, in nanoseconds; NULL when the
-- endpoint sets none (the gateway's --predict-timeout applies). (0006 and 0007 are taken by
-- other changes.) Keep in step with the other database.
ALTER TABLE endpoints ADD COLUMN inference_timeout_nanos BIGINT;
