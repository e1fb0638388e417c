-- The autoscaler's last decision per deployed model (JSON: current and desired replica counts,
-- the reason in words, the time), written by the controller that leads when the decision
-- changes, read by the API of any process. NULL until the first decision. Keep in step with the
-- other database.
ALTER TABLE deployed_models ADD COLUMN autoscaling TEXT;
