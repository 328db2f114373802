-- 0008: the device model (Device object 3/0/1, Model Number) of each
-- endpoint, so that a deployment can target every device of a model and the
-- device list can filter by it.
ALTER TABLE endpoint ADD COLUMN model TEXT NOT NULL DEFAULT '';
CREATE INDEX endpoint_model ON endpoint(model);
