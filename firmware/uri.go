package firmware

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// Delivery methods, as recorded per device.
const (
	MethodCoAP  = "coap"
	MethodCoAPS = "coaps"
	MethodHTTP  = "http"
	MethodHTTPS = "https"
	MethodPush  = "push"
)

// maxURILen is the Package URI's limit (object 5 resource 1: String,
// 0..255 bytes).
const maxURILen = 255

// packageURI is the absolute URI a device downloads the image from:
// <scheme>://<host>:<port>/fw/<sha256>/<token> — the hash lets the device
// check what it got; the per-device token is the permission over HTTP
// (which has no DTLS identity) and names the device over CoAP. The host
// is the configured one or the address on which the device reached the
// appliance.
func (s *Service) packageURI(reg *server.Registration, method string, fw store.Firmware, token string) (string, error) {
	s.mu.Lock()
	ls := s.listeners
	s.mu.Unlock()
	listen := map[string]string{MethodCoAP: ls.CoAP, MethodCoAPS: ls.CoAPS, MethodHTTP: ls.HTTP, MethodHTTPS: ls.HTTPS}[method]
	if listen == "" {
		return "", fmt.Errorf("firmware: the appliance does not listen for %s", method)
	}
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("firmware: listener %q: %w", listen, err)
	}
	host := s.cfg.Advertise
	if host == "" {
		host = reachedHost(lh, reg.Peer.Addr)
	}
	// The device's own download token, for every scheme: over HTTP it is
	// the permission; over CoAP it tells apart devices that download from
	// one address (behind a NAT), whose progress would otherwise be
	// credited to whichever of them the address matched first.
	path := "/fw/" + fw.SHA256
	if token != "" {
		path += "/" + token
	}
	uri := method + "://" + net.JoinHostPort(host, lp) + path
	if len(uri) > maxURILen {
		return "", fmt.Errorf("firmware: package URI %q is longer than %d bytes; configure a shorter advertised host", uri, maxURILen)
	}
	return uri, nil
}

// reachedHost is the listener's address when it is a specific one, else
// the local address the kernel uses towards the device — the one the
// device reached (no packet is sent by a UDP connect).
func reachedHost(listenHost string, device netip.AddrPort) string {
	if ip, err := netip.ParseAddr(listenHost); err == nil && !ip.IsUnspecified() {
		return ip.String()
	}
	if device.IsValid() {
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(device)); err == nil {
			defer c.Close()
			if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
				return a.AddrPort().Addr().Unmap().String()
			}
		}
	}
	if listenHost != "" {
		return listenHost
	}
	return "localhost"
}

// chooseMethod picks how a device gets the image from what it announced in
// 5/0/8 (protocols) and 5/0/9 (delivery), preferring the transport it
// registered over: CoAPS for a DTLS device, CoAP otherwise, then HTTP(S).
// No 5/0/8 means CoAP over the device's own transport (Core E.6: CoAP is
// the default). "" means nothing fits.
func (s *Service) chooseMethod(reg *server.Registration, protocols []int64, delivery int64, haveDelivery bool) string {
	if haveDelivery && delivery == deliveryPushOnly {
		return MethodPush
	}
	s.mu.Lock()
	ls := s.listeners
	s.mu.Unlock()
	own := MethodCoAP
	if reg.Peer.Secure() {
		own = MethodCoAPS
	}
	if len(protocols) == 0 {
		return own
	}
	has := map[int64]bool{}
	for _, p := range protocols {
		has[p] = true
	}
	avail := map[string]bool{MethodCoAP: ls.CoAP != "", MethodCoAPS: ls.CoAPS != "", MethodHTTP: ls.HTTP != "", MethodHTTPS: ls.HTTPS != ""}
	order := []struct {
		m string
		p int64
	}{{own, map[string]int64{MethodCoAP: protoCoAP, MethodCoAPS: protoCoAPS}[own]}, {MethodCoAPS, protoCoAPS}, {MethodHTTPS, protoHTTPS}, {MethodHTTP, protoHTTP}}
	for _, o := range order {
		// A DTLS device never gets a plain download; a plain device may
		// use HTTP(S), whose token is its permission.
		if o.m == MethodCoAPS && !reg.Peer.Secure() {
			continue
		}
		if has[o.p] && avail[o.m] {
			return o.m
		}
	}
	if haveDelivery && delivery == 2 {
		return MethodPush
	}
	return ""
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
