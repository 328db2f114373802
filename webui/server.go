package webui

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"
)

// Server is the web UI and REST API.
type Server struct {
	cfg  Config
	deps Deps
	// queueWindow is cfg.QueueWindow, following saved settings.
	queueWindow atomic.Int64
	log         *slog.Logger
	now         func() time.Time
	version     string
	started     time.Time

	echo        *echo.Echo
	pages       *pageSet
	limiter     *limiter // failed logins per (user, address)
	ipLimiter   *limiter // failed logins per address, any user
	nameLimiter *limiter // failed logins per user, any address: a short backoff
	reveals     *revealCache
	metrics     *httpMetrics
	enrolls     *enrollCache
	setupMu     sync.Mutex
	dummyHash   string

	httpLn, tlsLn net.Listener
	addrMu        sync.Mutex
	addr, tlsAddr string
	ready         chan struct{}
}

// New builds the server. Store, Data and Registry are required.
func New(cfg Config, deps Deps, opts ...Option) (*Server, error) {
	if deps.Store == nil || deps.Data == nil || deps.Registry == nil {
		return nil, fmt.Errorf("webui: Store, Data and Registry are required: %w", ErrInvalid)
	}
	def := DefaultConfig()
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = def.SessionIdle
	}
	if cfg.SessionAbsolute <= 0 {
		cfg.SessionAbsolute = def.SessionAbsolute
	}
	if cfg.LoginFailures <= 0 {
		cfg.LoginFailures = def.LoginFailures
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = def.LoginWindow
	}
	if cfg.LoginLockout <= 0 {
		cfg.LoginLockout = def.LoginLockout
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = def.MaxBody
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = def.MaxUpload
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = def.MaxWait
	}
	if cfg.QueueWindow <= 0 {
		cfg.QueueWindow = def.QueueWindow
	}
	if cfg.EnrollTTL <= 0 {
		cfg.EnrollTTL = def.EnrollTTL
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		deps:    deps,
		log:     log.With("component", "webui"),
		now:     time.Now,
		version: "dev",
		metrics: newHTTPMetrics(),
		ready:   make(chan struct{}),
	}
	s.queueWindow.Store(int64(cfg.QueueWindow))
	for _, o := range opts {
		o(s)
	}
	s.started = s.now()
	s.limiter = newLimiter(cfg.LoginFailures, cfg.LoginWindow, cfg.LoginLockout).withBackoff(cfg.LoginLockout / 15)
	s.ipLimiter = newLimiter(4*cfg.LoginFailures, cfg.LoginWindow, cfg.LoginLockout)
	s.nameLimiter = newLimiter(2*cfg.LoginFailures, cfg.LoginWindow, time.Minute).withBackoff(5 * time.Second)
	s.reveals = newRevealCache(cfg.EnrollTTL)
	s.enrolls = newEnrollCache(cfg.EnrollTTL)
	h, err := HashPassword("timing-equaliser")
	if err != nil {
		return nil, err
	}
	s.dummyHash = h
	ps, err := newPageSet()
	if err != nil {
		return nil, err
	}
	s.pages = ps
	s.echo = s.routes()
	return s, nil
}

// Handler returns the whole HTTP handler (tests, or an outer server).
func (s *Server) Handler() http.Handler { return s.echo }

// Ready is closed once Run listens; Addr and TLSAddr are valid then.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the plain-HTTP address in use, after Run started.
func (s *Server) Addr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// TLSAddr is the HTTPS address in use, or "" without TLS.
func (s *Server) TLSAddr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.tlsAddr
}

// Run serves until ctx ends, then shuts down within five seconds. With TLS
// configured it serves HTTPS and the plain listener redirects to it.
func (s *Server) Run(ctx context.Context) error {
	ln := s.httpLn
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("webui: listen %s: %w", s.cfg.Listen, err)
		}
	}
	var tln net.Listener
	if s.cfg.TLS != nil {
		tln = s.tlsLn
		if tln == nil {
			var err error
			if tln, err = net.Listen("tcp", s.cfg.TLSListen); err != nil {
				ln.Close()
				return fmt.Errorf("webui: listen %s: %w", s.cfg.TLSListen, err)
			}
		}
	}
	s.addrMu.Lock()
	s.addr = ln.Addr().String()
	if tln != nil {
		s.tlsAddr = tln.Addr().String()
	}
	s.addrMu.Unlock()

	plain := http.Handler(s.echo)
	if tln != nil {
		plain = s.redirectToHTTPS()
	}
	servers := []*http.Server{{Handler: plain, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}}
	if tln != nil {
		tc := s.cfg.TLS.Clone()
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		servers = append(servers, &http.Server{Handler: s.echo, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)})
		tln = tls.NewListener(tln, tc)
	}
	s.log.Info("web UI listening", "http", s.Addr(), "https", s.TLSAddr())
	close(s.ready)

	errc := make(chan error, 2)
	go func() { errc <- servers[0].Serve(ln) }()
	if tln != nil {
		go func() { errc <- servers[1].Serve(tln) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("webui: serve: %w", err)
	}
	return nil
}

// redirectToHTTPS sends every plain request to the HTTPS listener on the
// same host; /healthz stays plain so that probes need no certificate.
func (s *Server) redirectToHTTPS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			s.echo.ServeHTTP(w, r)
			return
		}
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		_, port, _ := net.SplitHostPort(s.TLSAddr())
		target := "https://" + net.JoinHostPort(host, port) + r.URL.RequestURI()
		http.Redirect(w, r, target, http.StatusPermanentRedirect)
	})
}
