// Package dtls is FlowNexus' CoAPS transport: a DTLS 1.2 server that
// implements coap.Transport over one UDP socket, and a client transport for
// the simulator and tests. It is built on pion/dtls.
//
// It owns the per-datagram demultiplexer (record header parsing, routing by
// Connection ID or source address, RFC 6347 §4.1 and RFC 9146 §3), PSK and
// X.509 authentication through callbacks the appliance supplies, and the
// parking of idle sessions: an established session that has been quiet for a
// while is exported as pion's serialised State (a few hundred bytes) and its
// connection, goroutines and buffers are dropped; the next record for it
// (found by CID or address) rebuilds the connection from that state. That is
// how sleeping queue-mode devices keep their session through a sleep without
// costing a live connection each. When more than Config.MaxLive sessions
// are live (a fleet reconnecting at once) the longest-idle ones are parked
// early, which bounds memory. Handshakes whose client never answers the
// HelloVerifyRequest are dropped after Config.HelloTimeout, and at
// Config.MaxHandshakes the oldest of them makes room for a new ClientHello.
// During a flood (Config.HelloCookieAt handshakes in progress) a
// ClientHello from an unverified address gets a stateless
// HelloVerifyRequest and makes no state at all (cookie.go, RFC 6347
// §4.2.1); a client that returns the cookie is verified and told to start
// over, because pion cannot continue a handshake whose cookie it did not
// make.
//
// With Config.SessionFile, sessions survive a restart: a clean stop writes
// them all to that file, and a crash journal beside it (journal.go) gets
// every new session's state as it is established, so a kill -9 or power
// cut costs the devices no handshake either.
//
// Measured on the 2-core development machine (BenchmarkIdleSessions,
// 10,000 PSK devices registered at the LwM2M server): a live session costs
// about 58 KB and 4 goroutines, a parked one 0 goroutines and about 8 KB of
// heap for all layers together (LwM2M registration and CoAP state
// included); peak RSS 230 MB during the fill, 95 MB once all are parked.
//
// It must not know LwM2M: endpoint names, registrations and the binding of
// an endpoint to a DTLS identity are decided above it (lwm2m/server,
// appliance). It must not store credentials; it asks for them.
package dtls
