package firmware

import "sync/atomic"

// ServeStats counts what the firmware server handed out since start: the
// CoAP Block2 responses that carried part of an image, and the image bytes
// sent over CoAP(S) and HTTP(S). Refusals count nothing; a retransmitted
// response the CoAP layer answers from its deduplication cache (RFC 7252
// §4.5) does not reach the handler and is not counted again.
type ServeStats struct {
	// Blocks is the number of CoAP Block2 responses carrying image bytes
	// (RFC 7959 §2.4), of whatever size the device asked for.
	Blocks int64
	// CoAPBytes and HTTPBytes are the image bytes in those responses.
	CoAPBytes, HTTPBytes int64
}

// serveCounters are the atomic counters behind ServeStats.
type serveCounters struct {
	blocks, coapBytes, httpBytes atomic.Int64
}

// Stats returns the serving counters.
func (s *Service) Stats() ServeStats {
	return ServeStats{Blocks: s.served.blocks.Load(), CoAPBytes: s.served.coapBytes.Load(), HTTPBytes: s.served.httpBytes.Load()}
}
