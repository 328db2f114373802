package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// ErrShutdownTimeout is returned when a graceful shutdown did not finish
// within systemd.shutdown_timeout.
var ErrShutdownTimeout = errors.New("graceful shutdown timed out")

// Notifier speaks systemd's notify protocol (sd_notify(3)) over the socket
// named by $NOTIFY_SOCKET. Outside systemd every call is a no-op.
type Notifier struct {
	log *slog.Logger
}

// NewNotifier returns a Notifier logging through log.
func NewNotifier(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{log: log.With("component", "systemd")}
}

func (n *Notifier) send(state string) error {
	// The environment is kept: the watchdog loop and STOPPING need the
	// socket after READY.
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("systemd notify: %w", err)
	}
	return nil
}

// Ready tells systemd that start-up is complete: for a Type=notify unit this
// is when `systemctl start` returns and dependent units start.
func (n *Notifier) Ready(status string) error {
	return n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Stopping tells systemd that a graceful shutdown has begun.
func (n *Notifier) Stopping() error {
	return n.send(daemon.SdNotifyStopping + "\nSTATUS=stopping")
}

// WatchdogInterval is how often RunWatchdog checks health and pings: half of
// WatchdogSec, as sd_watchdog_enabled(3) recommends. It is zero when the
// unit has no watchdog or the watchdog is meant for another process.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// RunWatchdog pings systemd's watchdog every WatchdogInterval while health
// returns nil, until ctx ends. While health fails it stops pinging, so that
// systemd restarts a service whose parts have died or hung
// (Restart=on-failure), and it says why in the unit's STATUS. Without a
// watchdog it returns nil at once.
func (n *Notifier) RunWatchdog(ctx context.Context, health func() error) error {
	every := WatchdogInterval()
	if every == 0 {
		return nil
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// select picks at random among ready cases: a tick that raced
		// the cancellation must not start another health check.
		if ctx.Err() != nil {
			return nil
		}
		err := health()
		switch {
		case err == nil && healthy:
			if err := n.send(daemon.SdNotifyWatchdog); err != nil {
				n.log.Warn("watchdog ping failed", "err", err)
			}
		case err == nil:
			healthy = true
			n.log.Info("health restored, watchdog pings resume")
			if err := n.send(daemon.SdNotifyWatchdog + "\nSTATUS=running"); err != nil {
				n.log.Warn("watchdog ping failed", "err", err)
			}
		case healthy:
			healthy = false
			n.log.Error("health check failed, watchdog pings withheld", "err", err)
			if err := n.send("STATUS=unhealthy: " + err.Error()); err != nil {
				n.log.Warn("status update failed", "err", err)
			}
		}
	}
}

// Service is what RunService supervises: the Appliance satisfies it.
type Service interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// RunService runs svc under systemd's protocol: READY once svc is ready
// (store open and migrated, listeners bound), watchdog pings while health
// passes, STOPPING when ctx ends (SIGTERM), and a shutdown bounded by
// cfg.ShutdownTimeout. health may be nil when there is nothing to check.
func RunService(ctx context.Context, svc Service, health func() error, cfg SystemdConfig, log *slog.Logger) error {
	n := NewNotifier(log)
	// Run gets its own context so that a signal starts the bounded
	// shutdown here instead of cancelling the components directly.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()

	var wg sync.WaitGroup
	defer wg.Wait()
	wdCtx, stopWD := context.WithCancel(runCtx)
	defer stopWD()

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return n.shutdown(cancel, done, cfg.ShutdownTimeout)
	case <-svc.Ready():
	}
	if err := n.Ready("running"); err != nil {
		n.log.Warn("READY not delivered", "err", err)
	}
	if health == nil {
		health = func() error { return nil }
	}
	if cfg.Watchdog {
		wg.Go(func() { _ = n.RunWatchdog(wdCtx, health) })
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		stopWD()
		return n.shutdown(cancel, done, cfg.ShutdownTimeout)
	}
}

func (n *Notifier) shutdown(cancel context.CancelFunc, done <-chan error, bound time.Duration) error {
	if err := n.Stopping(); err != nil {
		n.log.Warn("STOPPING not delivered", "err", err)
	}
	cancel()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case err := <-done:
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-t.C:
		return fmt.Errorf("appliance: %w after %s", ErrShutdownTimeout, bound)
	}
}

// ActivatedSockets are the sockets systemd passed by socket activation
// (sd_listen_fds(3)), by their FileDescriptorName= ("http", "coap", …).
type ActivatedSockets struct {
	Listeners   map[string]net.Listener
	PacketConns map[string]net.PacketConn
}

// Listeners takes over the sockets passed by systemd socket activation,
// stream sockets as listeners and datagram sockets as packet connections. It
// unsets LISTEN_* so that child processes do not inherit them, so call it
// once. Without socket activation both maps are empty.
func Listeners() (ActivatedSockets, error) {
	s := ActivatedSockets{Listeners: map[string]net.Listener{}, PacketConns: map[string]net.PacketConn{}}
	for _, f := range activation.Files(true) {
		name := f.Name()
		if l, err := net.FileListener(f); err == nil {
			if _, dup := s.Listeners[name]; dup {
				f.Close()
				l.Close()
				return s, fmt.Errorf("socket activation: two stream sockets named %q", name)
			}
			s.Listeners[name] = l
			f.Close()
			continue
		}
		if pc, err := net.FilePacketConn(f); err == nil {
			if _, dup := s.PacketConns[name]; dup {
				f.Close()
				pc.Close()
				return s, fmt.Errorf("socket activation: two datagram sockets named %q", name)
			}
			s.PacketConns[name] = pc
			f.Close()
			continue
		}
		f.Close()
		return s, fmt.Errorf("socket activation: fd %q is neither a stream nor a datagram socket", name)
	}
	return s, nil
}
