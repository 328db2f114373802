-- 0001: the appliance's vocabulary. Times are Unix milliseconds (UTC);
-- 0 means "never/unset".

CREATE TABLE user (
	id            INTEGER PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
	password_hash TEXT NOT NULL,
	role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
	disabled      INTEGER NOT NULL DEFAULT 0,
	created       INTEGER NOT NULL,
	last_login    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE session (
	id_hash   TEXT PRIMARY KEY,
	user_id   INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
	csrf      TEXT NOT NULL,
	created   INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	expires   INTEGER NOT NULL
);
CREATE INDEX session_user ON session(user_id);
CREATE INDEX session_expires ON session(expires);

CREATE TABLE api_token (
	id         INTEGER PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES user(id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	token_hash TEXT NOT NULL UNIQUE,
	created    INTEGER NOT NULL,
	last_used  INTEGER NOT NULL DEFAULT 0,
	expires    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_token_user ON api_token(user_id);

CREATE TABLE setting (
	key     TEXT PRIMARY KEY,
	value   TEXT NOT NULL,
	updated INTEGER NOT NULL
);

CREATE TABLE audit (
	id     INTEGER PRIMARY KEY,
	t      INTEGER NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_t ON audit(t);

-- AUTOINCREMENT: ids of deleted endpoints are never reused, so a stale
-- id cached by the ingestion writer cannot land on another device.
CREATE TABLE endpoint (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	name             TEXT NOT NULL UNIQUE,
	registration_id  TEXT NOT NULL DEFAULT '',
	online           INTEGER NOT NULL DEFAULT 0,
	pending          INTEGER NOT NULL DEFAULT 0,
	last_seen        INTEGER NOT NULL DEFAULT 0,
	lifetime         INTEGER NOT NULL DEFAULT 0,
	binding          TEXT NOT NULL DEFAULT '',
	lwm2m_version    TEXT NOT NULL DEFAULT '',
	queue_mode       INTEGER NOT NULL DEFAULT 0,
	security_mode    TEXT NOT NULL DEFAULT '',
	object_links     TEXT NOT NULL DEFAULT '',
	address          TEXT NOT NULL DEFAULT '',
	firmware_version TEXT NOT NULL DEFAULT '',
	registered_at    INTEGER NOT NULL DEFAULT 0,
	deregistered_at  INTEGER NOT NULL DEFAULT 0,
	created          INTEGER NOT NULL
);
CREATE INDEX endpoint_online ON endpoint(online);
CREATE INDEX endpoint_security ON endpoint(security_mode);
CREATE INDEX endpoint_firmware ON endpoint(firmware_version);
CREATE INDEX endpoint_last_seen ON endpoint(last_seen);

CREATE TABLE credential (
	endpoint_id  INTEGER PRIMARY KEY REFERENCES endpoint(id) ON DELETE CASCADE,
	mode         TEXT NOT NULL CHECK (mode IN ('nosec', 'psk', 'x509', 'bootstrap')),
	psk_identity TEXT,
	psk_key      BLOB,
	cert_pem     TEXT NOT NULL DEFAULT '',
	cert_serial  TEXT NOT NULL DEFAULT '',
	revoked      INTEGER NOT NULL DEFAULT 0,
	created      INTEGER NOT NULL,
	updated      INTEGER NOT NULL
);
CREATE UNIQUE INDEX credential_psk_identity ON credential(psk_identity) WHERE psk_identity IS NOT NULL;
CREATE INDEX credential_cert_serial ON credential(cert_serial) WHERE cert_serial != '';

CREATE TABLE resource_type (
	object_id   INTEGER NOT NULL,
	resource_id INTEGER NOT NULL,
	name        TEXT NOT NULL,
	type        INTEGER NOT NULL,
	units       TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (object_id, resource_id)
) WITHOUT ROWID;

CREATE TABLE operation (
	id          INTEGER PRIMARY KEY,
	endpoint_id INTEGER NOT NULL REFERENCES endpoint(id) ON DELETE CASCADE,
	type        TEXT NOT NULL,
	paths       TEXT NOT NULL DEFAULT '[]',
	payload     TEXT NOT NULL DEFAULT 'null',
	format      TEXT NOT NULL DEFAULT '',
	status      TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'confirmed', 'failed')),
	attempts    INTEGER NOT NULL DEFAULT 0,
	created     INTEGER NOT NULL,
	updated     INTEGER NOT NULL,
	result      TEXT NOT NULL DEFAULT 'null',
	error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX operation_endpoint_status ON operation(endpoint_id, status, id);
CREATE INDEX operation_status ON operation(status, id);

CREATE TABLE firmware (
	id        INTEGER PRIMARY KEY,
	version   TEXT NOT NULL,
	name      TEXT NOT NULL DEFAULT '',
	file_name TEXT NOT NULL,
	sha256    TEXT NOT NULL UNIQUE,
	size      INTEGER NOT NULL,
	created   INTEGER NOT NULL,
	updated   INTEGER NOT NULL
);

CREATE TABLE deployment (
	id          INTEGER PRIMARY KEY,
	firmware_id INTEGER NOT NULL REFERENCES firmware(id) ON DELETE RESTRICT,
	status      TEXT NOT NULL,
	created     INTEGER NOT NULL,
	updated     INTEGER NOT NULL
);

CREATE TABLE deployment_device (
	deployment_id INTEGER NOT NULL REFERENCES deployment(id) ON DELETE CASCADE,
	endpoint_id   INTEGER NOT NULL REFERENCES endpoint(id) ON DELETE CASCADE,
	state         TEXT NOT NULL,
	result        INTEGER NOT NULL DEFAULT 0,
	error         TEXT NOT NULL DEFAULT '',
	updated       INTEGER NOT NULL,
	PRIMARY KEY (deployment_id, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX deployment_device_endpoint ON deployment_device(endpoint_id);

CREATE TABLE device_log (
	id          INTEGER PRIMARY KEY,
	endpoint_id INTEGER NOT NULL REFERENCES endpoint(id) ON DELETE CASCADE,
	t           INTEGER NOT NULL,
	line        TEXT NOT NULL
);
CREATE INDEX device_log_endpoint ON device_log(endpoint_id, id);
CREATE INDEX device_log_t ON device_log(t);
