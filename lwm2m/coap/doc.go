// Package coap is the CoAP message layer FlowNexus runs LwM2M on: message
// encoding (RFC 7252 §3), deduplication and confirmable retransmission
// (§4), request/response matching by token (§5.3), block-wise transfer
// (RFC 7959) and observe (RFC 7641), over any Transport — plain UDP or DTLS.
//
// It keeps per-peer state in maps and timers instead of a goroutine per peer,
// so that tens of thousands of mostly idle devices cost little. It knows
// nothing about LwM2M semantics; lwm2m/server and lwm2m/client build on it.
//
// Use:
//
//	t, _ := coap.ListenUDP("127.0.0.1:5683")       // or coap.DialUDP(local, remote) on a device
//	ep := coap.NewEndpoint(t, handler, coap.DefaultConfig(), coap.WithLogger(log))
//	go ep.Run(ctx)                                   // read loop + worker pool; closes t when ctx ends
//	resp, err := ep.Do(ctx, peer, req)               // request with retransmission, Block1/Block2
//	obs, first, err := ep.Observe(ctx, peer, req, fn) // RFC 7641 client side
//	err = ep.Notify(ctx, peer, token, resp)          // RFC 7641 server side
//
// Handlers get whole request bodies and may return bodies of any size; the
// endpoint does the blocks. A handler or observation function that must
// answer only after slow work (a database commit) calls Request.Defer or
// Notification.Defer and answers later, leaving the worker free for other
// peers; a confirmable notification it cannot take stays unacknowledged
// and its retransmission is delivered again. One Endpoint per Transport; it must not be given
// a goroutine per peer, nor scan its state per packet: deduplication
// expires from the head of a ring of entries that hold no pointer (the
// garbage collector never scans them), idle peers are swept every few
// seconds.
package coap
