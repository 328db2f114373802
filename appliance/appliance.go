package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flownexus/flownexus/firmware"
	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/bootstrap"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/dtls"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// Version is stamped at build time (-ldflags -X …/appliance.Version=…).
var Version = "0.0.0-dev"

// Appliance is one running FlowNexus: store, LwM2M server (CoAP and DTLS),
// bootstrap server, web UI, and the rules that connect them.
type Appliance struct {
	cfg     Config
	base    *slog.Logger // unscoped: components add their own "component"
	log     *slog.Logger
	sampler *logSampler // under base: bounds the lines devices cause
	// logClock is the sampler's clock (tests freeze it).
	logClock func() time.Time
	started  time.Time

	mu    sync.Mutex
	addrs Addrs
	ready chan struct{}

	listeners map[string]net.Listener // from socket activation, by name
	opTimeout time.Duration
	fwSweep   time.Duration
	packets   map[string]net.PacketConn

	// Set by Run, read by the web UI adapters and health checks.
	db      *store.DB
	pki     *PKI
	srv     *server.Server
	dtlsSrv *dtls.Server
	web     *webui.Server
	life    *lifecycle
	logs    *logCollector
	logCfg  *store.LogConfig // tests shrink the device-log lane
	// now is the lifecycle's clock for how often Updates are kept
	// (updateNote); nil is time.Now. Tests move it.
	now   func() time.Time
	fw    *firmware.Service
	alive map[string]*atomic.Bool // component → still running

	selfRestart bool          // a supervisor restarts us (WithSelfRestart)
	restart     chan struct{} // closed by requestRestart
	restartOnce sync.Once
}

// Addrs are the addresses the listeners actually bound (port 0 resolved).
type Addrs struct {
	HTTP, HTTPS, CoAP, CoAPS, Bootstrap, BootstrapDTLS string
}

// Option configures an Appliance.
type Option func(*Appliance)

// WithLogger sets the logger (slog.Default otherwise).
func WithLogger(l *slog.Logger) Option { return func(a *Appliance) { a.log = l } }

// WithListeners hands over already-open sockets (systemd socket
// activation): stream listeners keyed "http" and "https", datagram sockets keyed
// "coap", "coaps", "bootstrap", "bootstrap-dtls".
func WithListeners(ls map[string]net.Listener, pcs map[string]net.PacketConn) Option {
	return func(a *Appliance) { a.listeners, a.packets = ls, pcs }
}

// WithOperationTimeout bounds one attempt of an operation (default one
// minute: enough for CoAP's retransmissions, RFC 7252 §4.8.2).
func WithOperationTimeout(d time.Duration) Option { return func(a *Appliance) { a.opTimeout = d } }

// WithFirmwareSweep sets how often open firmware deployments are looked
// at without a device event (tests shorten it).
func WithFirmwareSweep(d time.Duration) Option { return func(a *Appliance) { a.fwSweep = d } }

// New validates cfg and prepares an appliance; nothing is opened until Run.
func New(cfg Config, opts ...Option) (*Appliance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Appliance{cfg: cfg, log: slog.Default(), ready: make(chan struct{}), alive: map[string]*atomic.Bool{},
		opTimeout: time.Minute, restart: make(chan struct{}), logClock: time.Now}
	for _, o := range opts {
		o(a)
	}
	a.sampler = newLogSampler(a.log.Handler(), cfg.Log.DeviceLinesPerSecond, a.logClock)
	a.base = slog.New(a.sampler)
	a.log = a.base.With("component", "appliance")
	return a, nil
}

// Ready is closed once the store is open and every listener is bound.
func (a *Appliance) Ready() <-chan struct{} { return a.ready }

// Addrs returns the bound addresses; valid after Ready.
func (a *Appliance) Addrs() Addrs {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addrs
}

// Health reports whether the store answers and the CoAP loop, the
// ingestion writer and the HTTP server are still running; systemd's
// watchdog is pinged only while it passes.
func (a *Appliance) Health() error { return a.health(context.Background()) }

func (a *Appliance) health(ctx context.Context) error {
	for name, ok := range a.alive {
		if !ok.Load() {
			return fmt.Errorf("%s stopped", name)
		}
	}
	if a.db == nil {
		return errors.New("store not open")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return a.db.Ping(ctx)
}

// Run opens the store, binds the listeners, starts every component and blocks
// until ctx ends or a component fails.
func (a *Appliance) Run(ctx context.Context) error {
	a.started = time.Now()
	cfg := a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	restoredBackup, err := ApplyPendingRestore(cfg, a.log)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	} else if restoredBackup {
		a.log.Info("restored a backup into the data dir")
	}

	reg := lwm2m.NewRegistry()
	if dir := filepath.Join(cfg.DataDir, "models"); dirExists(dir) {
		if _, err := reg.LoadDDFDir(dir); err != nil {
			a.log.Warn("some object models in the data dir did not load", "dir", dir, "err", err)
		}
	}

	sopts := []store.Option{store.WithLogger(a.base), store.WithRegistry(reg)}
	if a.logCfg != nil {
		sopts = append(sopts, store.WithLogConfig(*a.logCfg))
	}
	db, err := store.Open(ctx, a.storeConfig(), sopts...)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer db.Close()
	a.db = db
	if restoredBackup {
		// The restored audit trail ends at the backup; say that a
		// restore replaced what came after.
		if _, err := db.Audit(ctx, store.AuditEntry{Actor: "system", Action: "restore applied",
			Detail: "data as of the backup; the replaced data dir is kept beside it"}); err != nil {
			a.log.Warn("audit", "err", err)
		}
	}
	if err := db.SyncResourceTypes(ctx, reg); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// Devices online before this start; those whose registration was not
	// saved are asked to register again (reconnect.go), once restore
	// below tells which.
	wasOnline, err := reconnectCandidates(ctx, db)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}

	pki, err := OpenPKI(DefaultPKIConfig(filepath.Join(cfg.DataDir, "pki")))
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	a.pki = pki

	sets, err := newSettings(ctx, db, cfg)
	if err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	broker := webui.NewBroker()
	lctx, lcancel := context.WithCancel(ctx)
	life := &lifecycle{db: db, log: a.base.With("component", "lifecycle"), policy: sets.policy,
		uplink: map[string]uplinkState{}, ctx: lctx, refusals: make(chan refusal, refusalQueue), now: a.now}
	// Deferred calls run last first: stop the post-registration work,
	// wait for it, and only then close the store (deferred above).
	defer life.wg.Wait()
	defer lcancel()
	scfg := server.DefaultConfig()
	scfg.DefaultLifetime = cfg.LwM2M.DefaultLifetime
	scfg.AwakeWindow = cfg.LwM2M.QueueAwakeWindow
	scfg.CoAP.PeerRate = cfg.LwM2M.PeerRate
	regs := newRegStore(db, a.base)
	life.regs = regs
	srv := server.New(scfg, server.WithHandler(life), server.WithRegistry(reg), server.WithLogger(a.base),
		server.WithPersister(regs))
	// Settings saved in the web UI take effect at once, and those saved
	// before this start override the conffile's values.
	sets.apply = func(v webui.Settings) {
		srv.SetAwakeWindow(time.Duration(v.QueueWindowSeconds) * time.Second)
		db.SetRetention(time.Duration(v.RetentionDays) * 24 * time.Hour)
		applyLogSettings(db, v)
	}
	cur, _ := sets.LoadSettings(ctx)
	if sets.saved {
		sets.apply(cur)
	}
	a.srv = srv
	life.srv = srv
	// Registrations saved by the last run are given back before any
	// listener runs, so their devices notice no restart (registrations.go).
	restored, err := restoreRegistrations(ctx, db, srv, scfg.ExpiryGrace, a.log)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	life.restored(restored)
	retrigger := notRestored(wasOnline, restored)
	disp := newDispatcher(db, srv, a.base, cfg.LwM2M.OperationAttempts, a.opTimeout, life.reachable,
		func(op store.Operation) {
			broker.Publish(webui.LiveEvent{Kind: "operation", Endpoint: op.Endpoint, Time: op.Updated, OperationID: op.ID, Status: op.Status})
		})
	life.disp = disp
	a.life = life
	life.logs = newLogCollector(db, a.base.With("component", "device-logs"))
	disp.logs = life.logs
	a.logs = life.logs
	logBroker := webui.NewBroker()
	fw, err := a.firmwareService(ctx, db, srv, life, func(dd store.DeploymentDevice) {
		broker.Publish(webui.LiveEvent{Kind: "deployment", Endpoint: dd.Endpoint, Time: time.Now().UTC(), Status: dd.State,
			Deployment: dd.DeploymentID, Progress: dd.Progress})
	})
	if err != nil {
		return fmt.Errorf("firmware: %w", err)
	}
	defer fw.Library().Close()
	life.fw = fw
	a.fw = fw
	srv.Handle("/fw/", fw)

	// Bind every socket before anything runs, so a port in use fails the
	// start with one clear line; until the components own them, a failed
	// start closes what it opened.
	var opened []io.Closer
	started := false
	defer func() {
		if !started {
			for _, c := range opened {
				c.Close()
			}
		}
	}()
	udp, err := a.listenUDP("coap", cfg.Listen.CoAP)
	if err != nil {
		return err
	}
	opened = append(opened, udp)
	var dtlsSrv *dtls.Server
	if cfg.Listen.CoAPS != "" {
		dcfg := pki.DTLSConfig(db, a.base)
		life.recordHandshakeRefusals(&dcfg)
		// Parked sessions outlive a restart (an upgrade), so sleeping
		// devices do not all handshake again at once.
		dcfg.SessionFile = filepath.Join(cfg.DataDir, "dtls-sessions")
		if dtlsSrv, err = a.listenDTLS("coaps", cfg.Listen.CoAPS, dcfg); err != nil {
			return err
		}
		opened = append(opened, dtlsSrv)
		a.dtlsSrv = dtlsSrv
	}
	host := advertisedHost(cfg.Listen.CoAP)
	bsPolicy := BootstrapPolicy{Creds: db, Lifetime: cfg.LwM2M.DefaultLifetime, Binding: "U",
		PlainServerURI: "coap://" + net.JoinHostPort(host, strconv.Itoa(portOf(udp.LocalAddr().String())))}
	if dtlsSrv != nil {
		bsPolicy.ServerURI = "coaps://" + net.JoinHostPort(host, strconv.Itoa(portOf(dtlsSrv.LocalAddr().String())))
	}
	bcfg := bootstrap.DefaultConfig()
	bcfg.Provision = bsPolicy.Provision
	bcfg.Logger = a.base.With("component", "bootstrap")
	bs, err := bootstrap.New(bcfg)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	var bsUDP coap.Transport
	var bsDTLS *dtls.Server
	if cfg.Listen.Bootstrap != "" {
		if bsUDP, err = a.listenUDP("bootstrap", cfg.Listen.Bootstrap); err != nil {
			return err
		}
		opened = append(opened, bsUDP)
	}
	if cfg.Listen.BootstrapDTLS != "" {
		if bsDTLS, err = a.listenDTLS("bootstrap-dtls", cfg.Listen.BootstrapDTLS, pki.BootstrapDTLSConfig(db, a.base.With("listener", "bootstrap"))); err != nil {
			return err
		}
		opened = append(opened, bsDTLS)
	}

	prov := &provisioner{db: db, pki: pki, host: host, evict: srv.Evict, ports: map[string]int{
		store.ModeNoSec: portOf(udp.LocalAddr().String()),
	}}
	if dtlsSrv != nil {
		prov.ports[store.ModePSK] = portOf(dtlsSrv.LocalAddr().String())
		prov.ports[store.ModeX509] = prov.ports[store.ModePSK]
	}
	if bsDTLS != nil {
		prov.ports[store.ModeBootstrap] = portOf(bsDTLS.LocalAddr().String())
	}
	wcfg := webui.DefaultConfig()
	wcfg.Listen = cfg.Listen.HTTP
	if cfg.HTTP.HTTPS {
		tc, err := a.httpsConfig(pki)
		if err != nil {
			return err
		}
		wcfg.TLS, wcfg.TLSListen = tc, cfg.Listen.HTTPS
	}
	wcfg.QueueWindow = cfg.LwM2M.QueueAwakeWindow
	if sets.saved {
		wcfg.QueueWindow = time.Duration(cur.QueueWindowSeconds) * time.Second
	}
	wopts := []webui.Option{webui.WithVersion(Version)}
	if l := a.listeners["http"]; l != nil {
		wopts = append(wopts, webui.WithListener(l))
	}
	if l := a.listeners["https"]; l != nil && wcfg.TLS != nil {
		wopts = append(wopts, webui.WithTLSListener(l))
	}
	data := webui.NewStoreData(db)
	web, err := webui.New(wcfg, webui.Deps{
		Store: db, Data: data, Registry: reg,
		Operations: uiOperations{d: disp, db: db}, Provisioner: prov, Enrollment: prov,
		Events: broker, LogEvents: logBroker, System: uiSystem{a}, Settings: sets, Registrations: srv,
		PKI:      uiCredentials{db: db, pki: pki, srv: srv},
		Firmware: uiFirmware{fw},
		Logger:   a.base,
	}, wopts...)
	if err != nil {
		return fmt.Errorf("web UI: %w", err)
	}
	a.web = web

	started = true // from here the components own and close the sockets
	g, gctx := errgroup.WithContext(ctx)
	run := func(name string, f func(context.Context) error) {
		ok := &atomic.Bool{}
		ok.Store(true)
		a.alive[name] = ok
		g.Go(func() error {
			err := f(gctx)
			ok.Store(false)
			if err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if gctx.Err() == nil {
				return fmt.Errorf("%s stopped", name)
			}
			return nil
		})
	}
	run("log", a.sampler.Run)
	run("store", db.Run)
	run("device-logs", db.RunLogs)
	run("registrations", regs.Run)
	run("coap", func(ctx context.Context) error { return srv.Serve(ctx, udp) })
	if dtlsSrv != nil {
		run("dtls", dtlsSrv.Run)
		run("coaps", func(ctx context.Context) error { return srv.Serve(ctx, dtlsSrv) })
	}
	// The bootstrap listeners take the LwM2M server's CoAP settings.
	if bsUDP != nil {
		ep := coap.NewEndpoint(bsUDP, bs, scfg.CoAP)
		run("bootstrap", ep.Run)
	}
	if bsDTLS != nil {
		run("bootstrap-dtls-transport", bsDTLS.Run)
		ep := coap.NewEndpoint(bsDTLS, bs, scfg.CoAP)
		run("bootstrap-dtls", ep.Run)
	}
	run("dispatcher", disp.Run)
	run("firmware", fw.Run)
	run("refusals", life.recordRefusals)
	// Registrations and values reach the web UI's live feed once they are
	// committed, so a page never shows what a crash could take back.
	run("live-feed", func(ctx context.Context) error { broker.FollowStore(ctx, db); return nil })
	run("live-logs", func(ctx context.Context) error { logBroker.FollowLogs(ctx, db); return nil })
	run("http", web.Run)
	run("dashboard-rate", data.Run)
	g.Go(func() error {
		select {
		case <-a.restart:
			a.log.Info("restarting as an admin asked")
			return ErrRestart
		case <-gctx.Done():
			return nil
		}
	})

	select {
	case <-web.Ready():
	case <-gctx.Done():
		return a.wait(g)
	}
	// Ready means devices can be reached too: the reconnect below and
	// the web UI's operations send on the LwM2M transports.
	if err := awaitServing(gctx, srv, udp, dtlsSrv); err != nil {
		return a.wait(g)
	}
	a.mu.Lock()
	a.addrs = Addrs{HTTP: web.Addr(), HTTPS: web.TLSAddr(), CoAP: udp.LocalAddr().String()}
	if dtlsSrv != nil {
		a.addrs.CoAPS = dtlsSrv.LocalAddr().String()
	}
	if bsUDP != nil {
		a.addrs.Bootstrap = bsUDP.LocalAddr().String()
	}
	if bsDTLS != nil {
		a.addrs.BootstrapDTLS = bsDTLS.LocalAddr().String()
	}
	addrs := a.addrs
	a.mu.Unlock()
	fl := firmware.Listeners{CoAP: addrs.CoAP, CoAPS: addrs.CoAPS, HTTP: addrs.HTTP}
	if addrs.HTTPS != "" {
		// Plain HTTP then only redirects to HTTPS.
		fl.HTTP, fl.HTTPS = "", addrs.HTTPS
	}
	fw.SetListeners(fl)
	webURL := "http://" + displayAddr(addrs.HTTP) + "/"
	if addrs.HTTPS != "" {
		webURL = "https://" + displayAddr(addrs.HTTPS) + "/"
	}
	a.log.Info("flownexus ready", "version", Version, "web", webURL,
		"coap", addrs.CoAP, "coaps", addrs.CoAPS, "bootstrap", addrs.Bootstrap, "bootstrap_dtls", addrs.BootstrapDTLS,
		"data_dir", cfg.DataDir)
	close(a.ready)
	life.wg.Go(func() { reconnect(life.ctx, srv, retrigger, a.log) })
	return a.wait(g)
}

func (a *Appliance) wait(g *errgroup.Group) error {
	err := g.Wait()
	a.sampler.Flush()
	a.log.Info("flownexus stopped")
	return err
}

func (a *Appliance) storeConfig() store.Config {
	sc := store.DefaultConfig()
	sc.Path = filepath.Join(a.cfg.DataDir, "flownexus.db")
	if a.cfg.Store.Retention > 0 {
		sc.Retention = a.cfg.Store.Retention
	}
	if a.cfg.Store.FlushInterval > 0 {
		sc.FlushInterval = a.cfg.Store.FlushInterval
	}
	sc.MaxSizeBytes = a.cfg.Store.MaxSizeMiB << 20
	sc.Synchronous = store.SyncMode(strings.ToUpper(a.cfg.Store.Synchronous))
	sc.MinFreeBytes = a.cfg.Store.MinFreeMiB << 20
	if sc.MinFreeBytes == 0 {
		sc.MinFreeBytes = -1 // reserve off: SQLITE_FULL alone refuses
	}
	return sc
}

// listenUDP binds a plain CoAP socket, or adopts the activated one.
func (a *Appliance) listenUDP(name, addr string) (coap.Transport, error) {
	buf := coap.WithReadBuffer(a.cfg.Listen.UDPReadBufferKiB << 10)
	var t coap.Transport
	if pc, ok := a.packets[name].(*net.UDPConn); ok {
		t = coap.NewUDPTransport(pc, buf)
	} else {
		var err error
		if t, err = coap.ListenUDP(addr, buf); err != nil {
			return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
		}
	}
	a.logReadBuffer(name, coap.ReadBuffer(t))
	return t, nil
}

func (a *Appliance) listenDTLS(name, addr string, cfg dtls.Config) (*dtls.Server, error) {
	cfg.ReadBuffer = a.cfg.Listen.UDPReadBufferKiB << 10
	var s *dtls.Server
	var err error
	if pc := a.packets[name]; pc != nil {
		s, err = dtls.New(pc, cfg)
	} else {
		s, err = dtls.Listen(addr, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("%s listener on %s: %w", name, addr, err)
	}
	a.logReadBuffer(name, s.ReadBuffer())
	return s, nil
}

// logReadBuffer says what receive buffer a listener got, and why it may
// be less than configured (net.core.rmem_max).
func (a *Appliance) logReadBuffer(name string, got int) {
	want := a.cfg.Listen.UDPReadBufferKiB << 10
	if want > 0 && got < want {
		a.log.Warn("UDP receive buffer smaller than configured; raise net.core.rmem_max",
			"listener", name, "granted_bytes", got, "configured_bytes", want)
		return
	}
	a.log.Info("UDP receive buffer", "listener", name, "granted_bytes", got)
}

// displayAddr turns ":8080" / "[::]:8080" into something a browser opens.
func displayAddr(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		h = "localhost"
	}
	return net.JoinHostPort(h, p)
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// lifecycleReachable reports whether the dispatcher would send to endpoint
// now (tests).
func (a *Appliance) lifecycleReachable(endpoint string) bool { return a.life.reachable(endpoint) }

// httpsConfig serves the web UI with the configured certificate, or with
// the server certificate the appliance's CA issued for this host.
func (a *Appliance) httpsConfig(pki *PKI) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.cfg.HTTP.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.HTTP.CertFile, a.cfg.HTTP.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("https certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
		return tc, nil
	}
	tc.Certificates = []tls.Certificate{*pki.ServerCertificate()}
	return tc, nil
}

// disp is the running dispatcher (tests).
func (a *Appliance) disp() *Dispatcher { return a.life.disp }
