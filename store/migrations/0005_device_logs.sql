-- 0005: device logs (issue 12). Lines get the Event Log class (LwM2M
-- object 20, resource 4010) and a syslog severity (RFC 5424 §6.2.1, 0–7;
-- NULL when the line states none), the reception time (retention by age
-- goes by it, so a device clock far off neither keeps nor drops lines
-- early), and their size. device_log_size holds the running total that
-- retention by size compares with its limit without scanning the table.
ALTER TABLE device_log ADD COLUMN class INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_log ADD COLUMN severity INTEGER;
ALTER TABLE device_log ADD COLUMN received INTEGER NOT NULL DEFAULT 0;
UPDATE device_log SET received = t;
CREATE INDEX device_log_received ON device_log(received);
CREATE TABLE device_log_size (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	lines INTEGER NOT NULL,
	bytes INTEGER NOT NULL
);
INSERT INTO device_log_size(id, lines, bytes)
	SELECT 1, COUNT(*), COALESCE(SUM(length(CAST(line AS BLOB)) + 80), 0) FROM device_log;
-- Deletions (retention, a deleted endpoint's cascade) keep the total right;
-- the ingestion lane adds its lines once per transaction.
CREATE TRIGGER device_log_size_delete AFTER DELETE ON device_log BEGIN
	UPDATE device_log_size SET lines = lines - 1, bytes = bytes - (length(CAST(OLD.line AS BLOB)) + 80) WHERE id = 1;
END;
