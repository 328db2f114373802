package simulation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Object 5 as a simulated device implements it (OMA-TS-LightweightM2M-Core
// 1.1 Appendix E.6): a Package URI starts a real download — CoAP(S) with
// Block2 at the device's block size, or HTTP(S) — whose result is checked
// against the SHA-256 in the URI; Update installs the version the image
// header names and re-registers with it in 3/0/3. Failures are injected
// on request.

// Failure modes a device can be told to simulate.
const (
	FailNone       = ""
	FailIntegrity  = "integrity"  // the download is corrupt: result 5
	FailStorage    = "storage"    // not enough flash: result 2
	FailConnection = "connection" // the download breaks off: result 4
	FailUpdate     = "update"     // installing fails: result 8
)

// Object 5 states and results the device reports.
const (
	fwIdle, fwDownloading, fwDownloaded, fwUpdating = 0, 1, 2, 3
	resultOK, resultStorage, resultConnLost         = 1, 2, 4
	resultIntegrity, resultUnsupportedPkg           = 5, 6
	resultInvalidURI, resultUpdateFailed            = 7, 8
	resultUnsupportedProtocol                       = 9
)

// FirmwareConfig is how a device takes firmware updates.
type FirmwareConfig struct {
	// Protocols are announced in 5/0/8 (0 CoAP, 1 CoAPS, 2 HTTP, 3
	// HTTPS); nil announces all four.
	Protocols []int64
	// Delivery is 5/0/9: 0 pull only, 1 push only, 2 both.
	Delivery int64
	// BlockSize is the Block2 size the device asks for (16..1024).
	BlockSize int
	// Failure is the failure to simulate (FailNone …).
	Failure string
	// Dial opens the device's own DTLS session to a coaps:// download
	// host (Zephyr's pull client does so with the device's credentials).
	Dial func(ctx context.Context, endpoint, hostport string) (coap.Transport, coap.Peer, error)
	// DialPlain opens a coap:// download; nil: UDP from the device's own
	// address to the URI's host (tests route it through a relay).
	DialPlain func(ctx context.Context, hostport string) (coap.Transport, coap.Peer, error)
	// HTTP downloads http(s):// URIs; nil uses a plain client.
	HTTP *http.Client
	// Hold makes the device accept a Package URI and stay Downloading
	// without fetching it (a device that downloads later; tests fetch
	// in its place).
	Hold bool
}

// imageMagic starts a simulated firmware image: magic, a length byte and
// the version the image installs.
var imageMagic = []byte("FNFW")

// FirmwareImage makes a simulated firmware image of size bytes that
// installs version.
func FirmwareImage(version string, size int, seed uint64) []byte {
	head := append(append(append([]byte{}, imageMagic...), byte(len(version))), version...)
	head = append(head, 0, 1, 2, 3) // binary from the start, never "text"
	if size < len(head) {
		size = len(head)
	}
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 11))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, head)
	return b
}

// imageVersion reads the version an image installs.
func imageVersion(b []byte) (string, bool) {
	if !bytes.HasPrefix(b, imageMagic) || len(b) < len(imageMagic)+1 {
		return "", false
	}
	n := int(b[len(imageMagic)])
	if len(b) < len(imageMagic)+1+n {
		return "", false
	}
	return string(b[len(imageMagic)+1 : len(imageMagic)+1+n]), true
}

// fwUpdater is a device's Object 5 state machine.
type fwUpdater struct {
	d   *Device
	cfg FirmwareConfig

	mu      sync.Mutex
	cancel  context.CancelFunc
	pending string // version downloaded, installed by Update
	gen     int    // bumps on every new URI, so a stale download cannot report
}

var (
	pathFWState   = lwm2m.NewPath(objFirmware, 0, 3)
	pathFWResult  = lwm2m.NewPath(objFirmware, 0, 5)
	pathFWPkgVer  = lwm2m.NewPath(objFirmware, 0, 7)
	pathFWVersion = lwm2m.NewPath(objDevice, 0, 3)
)

// installFirmware wires Object 5's write and execute handlers.
func (d *Device) installFirmware(cfg FirmwareConfig) error {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 256
	}
	if cfg.BlockSize < 16 || cfg.BlockSize > 1024 || cfg.BlockSize&(cfg.BlockSize-1) != 0 {
		return fmt.Errorf("%w: firmware block size %d is not a power of two in 16..1024", client.ErrBadRequest, cfg.BlockSize)
	}
	u := &fwUpdater{d: d, cfg: cfg}
	d.fw = u
	protos := cfg.Protocols
	if protos == nil {
		protos = []int64{0, 1, 2, 3}
	}
	multi := map[uint16]lwm2m.Value{}
	for i, p := range protos {
		multi[uint16(i)] = lwm2m.Int(p)
	}
	if err := errors.Join(
		d.firmware.SetMulti(lwm2m.NewPath(objFirmware, 0, 8), multi),
		d.firmware.Set(lwm2m.NewPath(objFirmware, 0, 9), lwm2m.Int(cfg.Delivery))); err != nil {
		return err
	}
	d.firmware.OnWrite(u.onWrite)
	d.firmware.OnExecute(2, u.onUpdate)
	return nil
}

func (u *fwUpdater) set(state, result int64) {
	_ = u.d.firmware.SetValues(
		lwm2m.Record{Path: pathFWState, Value: lwm2m.Int(state)},
		lwm2m.Record{Path: pathFWResult, Value: lwm2m.Int(result)})
}

func (u *fwUpdater) state() int64 {
	v, _ := u.d.firmware.Get(pathFWState)
	return v.Int()
}

// onWrite runs inside the CoAP handler: it must not block, so downloads
// run on their own goroutine.
func (u *fwUpdater) onWrite(p lwm2m.Path, v lwm2m.Value) error {
	switch p.ResourceID() {
	case 1:
		u.startPull(v.Str())
	case 0:
		u.push(v.Bytes())
	}
	return nil
}

// reset drops any download in progress (E.6: an empty URI or package
// resets the state machine to Idle, result 0).
func (u *fwUpdater) reset() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cancel != nil {
		u.cancel()
		u.cancel = nil
	}
	u.pending = ""
	u.gen++
	return u.gen
}

func (u *fwUpdater) startPull(uri string) {
	gen := u.reset()
	if uri == "" {
		u.set(fwIdle, 0)
		return
	}
	pu, err := url.Parse(uri)
	if err != nil || !pu.IsAbs() || pu.Host == "" {
		u.set(fwIdle, resultInvalidURI)
		return
	}
	if u.cfg.Delivery == 1 || !u.supports(pu.Scheme) {
		u.set(fwIdle, resultUnsupportedProtocol)
		return
	}
	ctx, cancel := context.WithTimeout(u.d.runContext(), 2*time.Minute)
	u.mu.Lock()
	u.cancel = cancel
	u.mu.Unlock()
	u.set(fwDownloading, 0)
	if u.cfg.Hold {
		cancel()
		return
	}
	go func() {
		defer cancel()
		state, result := u.download(ctx, pu)
		u.mu.Lock()
		stale := u.gen != gen
		u.mu.Unlock()
		if !stale {
			u.set(state, result)
		}
	}()
}

func (u *fwUpdater) supports(scheme string) bool {
	want := map[string]int64{"coap": 0, "coaps": 1, "http": 2, "https": 3}
	p, ok := want[scheme]
	if !ok {
		return false
	}
	protos := u.cfg.Protocols
	if protos == nil {
		return true
	}
	for _, q := range protos {
		if q == p {
			return true
		}
	}
	return false
}

// download fetches and checks the package; it returns the state and
// result to report.
func (u *fwUpdater) download(ctx context.Context, pu *url.URL) (int64, int64) {
	var body []byte
	var err error
	switch pu.Scheme {
	case "coap", "coaps":
		body, err = u.getCoAP(ctx, pu)
	default:
		body, err = u.getHTTP(ctx, pu)
	}
	switch {
	case errors.Is(err, errNoSpace):
		return fwIdle, resultStorage
	case err != nil:
		u.d.log.Info("firmware download failed", "endpoint", u.d.cfg.Endpoint, "uri", pu.String(), "err", err)
		return fwIdle, resultConnLost
	}
	if u.cfg.Failure == FailIntegrity && len(body) > 0 {
		body[len(body)/2] ^= 0xff
	}
	// The appliance publishes the image's SHA-256 as the segment after
	// /fw/ in the URI.
	segs := strings.Split(strings.Trim(pu.Path, "/"), "/")
	if len(segs) < 2 {
		return fwIdle, resultIntegrity
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != strings.ToLower(segs[1]) {
		return fwIdle, resultIntegrity
	}
	ver, ok := imageVersion(body)
	if !ok {
		return fwIdle, resultUnsupportedPkg
	}
	u.mu.Lock()
	u.pending = ver
	u.mu.Unlock()
	_ = u.d.firmware.Set(pathFWPkgVer, lwm2m.String(ver))
	return fwDownloaded, 0
}

var errNoSpace = errors.New("not enough flash for the package")

// getCoAP downloads with GET and Block2 at the configured block size (RFC
// 7959 §2.4), from the device's own source address.
func (u *fwUpdater) getCoAP(ctx context.Context, pu *url.URL) ([]byte, error) {
	var t coap.Transport
	var peer coap.Peer
	var err error
	if pu.Scheme == "coaps" {
		if u.cfg.Dial == nil {
			return nil, errors.New("no DTLS credentials for coaps downloads")
		}
		t, peer, err = u.cfg.Dial(ctx, u.d.cfg.Endpoint, pu.Host)
	} else if u.cfg.DialPlain != nil {
		t, peer, err = u.cfg.DialPlain(ctx, pu.Host)
	} else {
		local := "127.0.0.1:0"
		if h, _, e := net.SplitHostPort(u.d.cfg.LocalAddr); e == nil && h != "" {
			local = net.JoinHostPort(h, "0")
		}
		t, peer, err = coap.DialUDP(local, pu.Host)
	}
	if err != nil {
		return nil, err
	}
	cc := u.d.cfg.CoAP
	cc.MaxBodySize = 256 << 20
	ep := coap.NewEndpoint(t, nil, cc)
	ectx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = ep.Run(ectx); close(done) }()
	defer func() { stop(); t.Close(); <-done }()
	szx := coap.SZXFor(u.cfg.BlockSize)
	get := func(num uint32) (*coap.Message, error) {
		m := &coap.Message{Code: coap.GET}
		m.SetPath(pu.Path)
		m.SetBlock(coap.Block2, coap.Block{Num: num, SZX: szx})
		m.SetUint(coap.Size2, 0) // ask for the size (RFC 7959 §4)
		return ep.Do(ctx, peer, m)
	}
	switch u.cfg.Failure {
	case FailStorage:
		r, err := get(0)
		if err == nil && r.Code == coap.Content {
			return nil, errNoSpace
		}
		return nil, fmt.Errorf("first block: %v %v", r, err)
	case FailConnection:
		// Two blocks, then the link drops (block 1 does not fetch the rest).
		if _, err := get(1); err != nil {
			return nil, err
		}
		return nil, errors.New("connection lost")
	}
	r, err := get(0)
	if err != nil {
		return nil, err
	}
	if r.Code != coap.Content {
		return nil, fmt.Errorf("download answered %s: %s", r.Code, r.Payload)
	}
	return r.Payload, nil
}

func (u *fwUpdater) getHTTP(ctx context.Context, pu *url.URL) ([]byte, error) {
	hc := u.cfg.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pu.String(), nil)
	if err != nil {
		return nil, err
	}
	if u.cfg.Failure == FailConnection {
		req.Header.Set("Range", "bytes=0-511")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return nil, fmt.Errorf("download answered %s", resp.Status)
	}
	if u.cfg.Failure == FailStorage {
		return nil, errNoSpace
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if u.cfg.Failure == FailConnection {
		return nil, errors.New("connection lost")
	}
	return b, nil
}

// push takes a package written into 5/0/0 (push delivery); an empty one
// resets.
func (u *fwUpdater) push(b []byte) {
	u.reset()
	if len(b) == 0 || (len(b) == 1 && b[0] == 0) {
		u.set(fwIdle, 0)
		return
	}
	switch u.cfg.Failure {
	case FailStorage:
		u.set(fwIdle, resultStorage)
		return
	case FailIntegrity, FailConnection:
		u.set(fwIdle, resultIntegrity)
		return
	}
	ver, ok := imageVersion(b)
	if !ok {
		u.set(fwIdle, resultUnsupportedPkg)
		return
	}
	u.mu.Lock()
	u.pending = ver
	u.mu.Unlock()
	_ = u.d.firmware.Set(pathFWPkgVer, lwm2m.String(ver))
	u.set(fwDownloaded, 0)
}

// onUpdate is Execute 5/0/2: allowed only when Downloaded (E.6). The
// device installs after acknowledging, then comes back with a fresh
// Register that carries the new version in 3/0/3 — or reports result 8.
func (u *fwUpdater) onUpdate(uint16, string) error {
	if st := u.state(); st != fwDownloaded {
		return fmt.Errorf("simulation: firmware update in state %d: %w", st, client.ErrMethodNotAllowed)
	}
	u.mu.Lock()
	ver := u.pending
	u.mu.Unlock()
	u.set(fwUpdating, 0)
	go func() {
		if u.cfg.Failure == FailUpdate {
			u.set(fwIdle, resultUpdateFailed)
			return
		}
		_ = u.d.device.Set(pathFWVersion, lwm2m.String(ver))
		u.d.mu.Lock()
		u.d.cfg.Firmware = ver
		u.d.mu.Unlock()
		u.set(fwIdle, resultOK)
		u.d.reboot()
	}()
	return nil
}
