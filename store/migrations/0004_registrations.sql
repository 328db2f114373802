-- 0004: the LwM2M server's registrations and observations outlive a
-- restart (issue 13 §2): the appliance saves them here and gives them back
-- to the server at start, so devices neither register again nor lose the
-- observations their notifications belong to. One registration per
-- endpoint; its observations go with it.
CREATE TABLE lwm2m_registration (
	endpoint_id     INTEGER PRIMARY KEY REFERENCES endpoint(id) ON DELETE CASCADE,
	registration_id TEXT NOT NULL,
	lifetime        INTEGER NOT NULL, -- seconds
	lwm2m_version   TEXT NOT NULL DEFAULT '',
	binding         TEXT NOT NULL DEFAULT '',
	queue_mode      INTEGER NOT NULL DEFAULT 0,
	sms_number      TEXT NOT NULL DEFAULT '',
	object_links    TEXT NOT NULL DEFAULT '',
	address         TEXT NOT NULL DEFAULT '', -- the device's ip:port
	dtls_session    INTEGER NOT NULL DEFAULT 0, -- lwm2m/dtls session id, 0 for plain CoAP
	identity        TEXT NOT NULL DEFAULT '', -- DTLS identity (PSK identity, certificate CN)
	listener        TEXT NOT NULL DEFAULT '', -- local address of the listener it talks to
	registered_at   INTEGER NOT NULL,
	last_update     INTEGER NOT NULL
);

CREATE TABLE lwm2m_observation (
	token           TEXT PRIMARY KEY, -- hex
	endpoint_id     INTEGER NOT NULL REFERENCES lwm2m_registration(endpoint_id) ON DELETE CASCADE,
	registration_id TEXT NOT NULL,
	paths           TEXT NOT NULL, -- space-separated LwM2M paths
	composite       INTEGER NOT NULL DEFAULT 0,
	format          INTEGER NOT NULL, -- content format asked for (65535: none, the device chooses)
	started         INTEGER NOT NULL
);
CREATE INDEX lwm2m_observation_endpoint ON lwm2m_observation(endpoint_id);
