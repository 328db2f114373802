package appliance

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"time"
)

// writeMetrics writes the appliance's counters in the Prometheus text
// exposition format: registrations and traffic from the LwM2M server,
// ingestion from the store (including every refusal, per issue 5), DTLS
// sessions, firmware blocks and bytes served.
func (a *Appliance) writeMetrics(w io.Writer) error {
	bw := bufio.NewWriter(w)
	m := func(name, typ, help string, v any) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	s := a.srv.Stats()
	m("flownexus_registrations_current", "gauge", "Devices registered now.", s.Registered)
	m("flownexus_registrations_total", "counter", "Accepted Register requests.", s.Registrations)
	m("flownexus_updates_total", "counter", "Accepted Update requests.", s.Updates)
	m("flownexus_deregistrations_total", "counter", "De-register requests.", s.Deregistrations)
	m("flownexus_expirations_total", "counter", "Registrations that expired.", s.Expirations)
	m("flownexus_registrations_refused_total", "counter", "Register requests refused.", s.Refused)
	m("flownexus_notifications_total", "counter", "Notifications received.", s.Notifications)
	m("flownexus_notifications_refused_total", "counter", "Notifications answered 5.03 or not decodable.", s.NotificationDrops)
	m("flownexus_sends_total", "counter", "Send (/dp) requests received.", s.Sends)
	m("flownexus_sends_refused_total", "counter", "Send requests refused.", s.SendDrops)
	m("flownexus_device_requests_total", "counter", "Requests sent to devices.", s.Requests)
	m("flownexus_device_request_errors_total", "counter", "Requests to devices that failed.", s.RequestErrors)
	m("flownexus_observations_current", "gauge", "Active observations.", s.Observations)
	m("flownexus_queued_requests_current", "gauge", "Requests waiting for a queue-mode device.", s.Queued)
	m("flownexus_log_lines_left_out_total", "counter", "Log lines that devices caused beyond log.device_lines_per_second, counted instead of written.", a.sampler.LeftOut())
	c := s.CoAP
	m("flownexus_coap_rate_limited_total", "counter", "Datagrams dropped by the per-peer rate limit or the peer limit.", c.RateLimited)
	m("flownexus_coap_malformed_total", "counter", "Undecodable or oversized datagrams.", c.Malformed)
	m("flownexus_coap_overloaded_total", "counter", "Requests and notifications refused (5.03) because a queue was full.", c.Overloaded)
	m("flownexus_coap_device_busy_total", "counter", "Requests to devices refused because too many already waited for the device.", c.PeerBusy)
	m("flownexus_coap_trimmed_total", "counter", "Responses cut to a small multiple of the request for an unverified address (RFC 7252 §11.3).", c.Trimmed)
	m("flownexus_coap_notifications_out_of_order_total", "counter", "Notifications older than one already received for their observation (RFC 7641 §3.4, reordered on the way): stored as history and acknowledged, never shown as the latest value.", c.StaleNotifications)
	m("flownexus_coap_dedup_evicted_total", "counter", "Message ids forgotten early because the deduplication cache was full.", c.DedupEvicted)
	m("flownexus_coap_queued_current", "gauge", "Incoming requests and notifications waiting for a worker.", c.Queued)
	m("flownexus_coap_waiting_current", "gauge", "Requests to devices waiting for the device's turn (NSTART).", c.Waiting)

	st := a.db.Stats()
	m("flownexus_ingest_batches_accepted_total", "counter", "Batches accepted by the ingestion queue: notifications, Sends, read values, events and the Updates below.", st.Accepted)
	m("flownexus_ingest_seen_accepted_total", "counter", "Of the accepted batches, Updates that only moved a device's last-seen time.", st.AcceptedSeen)
	m("flownexus_ingest_readings_accepted_total", "counter", "Readings accepted by the ingestion queue.", st.AcceptedRecords)
	m("flownexus_ingest_readings_committed_total", "counter", "Readings committed to the database.", st.CommittedRecords)
	m("flownexus_ingest_batches_refused_total", "counter", "Batches refused because the queue was full.", st.Refused)
	m("flownexus_ingest_batches_failed_total", "counter", "Batches dropped after the writer failed.", st.Failed)
	m("flownexus_ingest_queue_length", "gauge", "Batches waiting in the ingestion queue.", st.QueueLen)
	m("flownexus_ingest_queue_capacity", "gauge", "Capacity of the ingestion queue.", st.QueueCap)
	m("flownexus_ingest_transactions_total", "counter", "Write transactions of the store's writer (readings and the writes grouped with them).", st.Transactions)
	m("flownexus_ingest_last_commit_seconds", "gauge", "Duration of the last commit.", st.LastCommit.Seconds())
	m("flownexus_ingest_max_ack_to_commit_seconds", "gauge", "Longest wait of a reading from acceptance to commit.", st.MaxAckToCommit.Seconds())
	m("flownexus_live_subscriber_drops_total", "counter", "Live updates not delivered to slow subscribers.", st.SubscriberDrops)
	m("flownexus_retention_deleted_total", "counter", "Rows and chunks removed by retention.", st.RetentionDeleted)
	m("flownexus_store_wal_bytes", "gauge", "Size of the SQLite write-ahead log file.", st.WALBytes)
	m("flownexus_store_wal_truncations_total", "counter", "Times readers kept the WAL from restarting until it was truncated.", st.WALTruncates)
	ds := a.db.DiskState()
	m("flownexus_disk_full", "gauge", "1 while new telemetry is refused for want of disk space (see /healthz for the reason).", b2i(ds.Full))
	m("flownexus_disk_free_bytes", "gauge", "Free space of the data directory's file system at the last check.", ds.FreeBytes)
	m("flownexus_ingest_batches_refused_disk_full_total", "counter", "Batches refused because the disk was full.", ds.Refused)

	a.writeLogMetrics(m)

	if a.dtlsSrv != nil {
		d := a.dtlsSrv.Stats()
		m("flownexus_dtls_sessions_current", "gauge", "DTLS sessions established or parked.", d.Sessions)
		m("flownexus_dtls_sessions_live", "gauge", "DTLS sessions with a live connection.", d.Live)
		m("flownexus_dtls_handshakes_total", "counter", "Completed DTLS handshakes.", d.HandshakesOK)
		m("flownexus_dtls_handshakes_failed_total", "counter", "Failed DTLS handshakes.", d.HandshakesFailed)
		m("flownexus_dtls_datagrams_dropped_total", "counter", "Datagrams dropped because a session queue was full.", d.Dropped)
		m("flownexus_dtls_handshakes_evicted_total", "counter", "Handshakes ended before the client returned the cookie, to admit a new ClientHello.", d.Evicted)
		m("flownexus_dtls_hellos_stateless_total", "counter", "ClientHellos answered with a stateless HelloVerifyRequest during a flood of handshakes.", d.StatelessHellos)
		m("flownexus_dtls_cookies_verified_total", "counter", "ClientHellos that returned a valid stateless cookie (the client then starts its handshake again).", d.CookiesVerified)
		m("flownexus_dtls_sessions_journaled_total", "counter", "DTLS session states written durably to the crash journal (kept across a kill -9 or power cut).", d.Journaled)
	}
	if a.fw != nil {
		f := a.fw.Stats()
		m("flownexus_firmware_blocks_served_total", "counter", "CoAP Block2 responses that carried firmware image bytes (any block size).", f.Blocks)
		m("flownexus_firmware_bytes_served_total", "counter", "Firmware image bytes served over CoAP(S) and HTTP(S).", f.CoAPBytes+f.HTTPBytes)
		m("flownexus_firmware_coap_bytes_served_total", "counter", "Firmware image bytes served over CoAP(S) in Block2 responses.", f.CoAPBytes)
	}
	m("flownexus_uptime_seconds", "gauge", "Seconds since start.", int64(time.Since(a.started).Seconds()))
	// Goroutines bound the cost of held work (issue 15: a Register flood
	// must not pile them up); the benchmark samples this gauge.
	m("go_goroutines", "gauge", "Goroutines that currently exist.", runtime.NumGoroutine())
	return bw.Flush()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
