-- 0006: firmware OTA. Images carry release notes and a target (device
-- model or free text); deployments carry their rollout policy and why they
-- stopped; each device of a deployment carries the secret of its HTTP
-- download URI, how it receives the image, when its current step started,
-- the bytes served so far and the version it ran before.
ALTER TABLE firmware ADD COLUMN notes TEXT NOT NULL DEFAULT '';
ALTER TABLE firmware ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE deployment ADD COLUMN max_concurrent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployment ADD COLUMN device_timeout INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployment ADD COLUMN failure_threshold REAL NOT NULL DEFAULT 0;
ALTER TABLE deployment ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE deployment_device ADD COLUMN token TEXT NOT NULL DEFAULT '';
ALTER TABLE deployment_device ADD COLUMN method TEXT NOT NULL DEFAULT '';
ALTER TABLE deployment_device ADD COLUMN progress INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployment_device ADD COLUMN started INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployment_device ADD COLUMN from_version TEXT NOT NULL DEFAULT '';
CREATE INDEX deployment_device_state ON deployment_device(state);
CREATE INDEX deployment_firmware ON deployment(firmware_id);
