package appliance

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeSystemd is a notify socket like the one systemd gives a Type=notify
// service: a unixgram socket whose path is in $NOTIFY_SOCKET.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &fakeSystemd{t: t, conn: conn}
}

// next returns the next datagram; the deadline only guards against a hang.
func (f *fakeSystemd) next() string {
	f.t.Helper()
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := f.conn.Read(buf)
	if err != nil {
		f.t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// none checks that nothing is queued on the socket right now.
func (f *fakeSystemd) none() {
	f.t.Helper()
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now())
	if n, err := f.conn.Read(buf); err == nil {
		f.t.Fatalf("unexpected notification %q", buf[:n])
	}
}

func TestNotifierReadyStopping(t *testing.T) {
	sd := newFakeSystemd(t)
	n := NewNotifier(nil)
	if err := n.Ready("running"); err != nil {
		t.Fatal(err)
	}
	if got := sd.next(); got != "READY=1\nSTATUS=running" {
		t.Errorf("ready sent %q", got)
	}
	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := sd.next(); !strings.HasPrefix(got, "STOPPING=1") {
		t.Errorf("stopping sent %q", got)
	}
}

func TestNotifierWithoutSystemdIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := NewNotifier(nil).Ready("x"); err != nil {
		t.Errorf("outside systemd Ready failed: %v", err)
	}
}

func TestNotifierUnreachableSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := NewNotifier(nil).Ready("x"); err == nil {
		t.Error("Ready to a missing socket reported no error")
	}
}

func setWatchdog(t *testing.T, every time.Duration) {
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(every.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
}

// steppedHealth lets the test answer each health check in turn, so the test
// knows exactly which ticks were healthy without timing anything.
type steppedHealth struct {
	calls   chan struct{}
	results chan error
}

func newSteppedHealth() *steppedHealth {
	return &steppedHealth{calls: make(chan struct{}), results: make(chan error)}
}

func (h *steppedHealth) check() error {
	h.calls <- struct{}{}
	return <-h.results
}

func (h *steppedHealth) answer(t *testing.T, err error) {
	t.Helper()
	select {
	case <-h.calls:
	case <-time.After(10 * time.Second):
		t.Fatal("health was not checked")
	}
	h.results <- err
}

// answerUntil answers every check, healthy, until done delivers: a check
// may be under way while ctx ends.
func (h *steppedHealth) answerUntil(t *testing.T, done <-chan error) {
	t.Helper()
	for {
		select {
		case <-h.calls:
			h.results <- nil
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	sd := newFakeSystemd(t)
	setWatchdog(t, 2*time.Millisecond)
	h := newSteppedHealth()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- NewNotifier(nil).RunWatchdog(ctx, h.check) }()

	h.answer(t, nil)
	if got := sd.next(); got != "WATCHDOG=1" {
		t.Fatalf("healthy tick sent %q", got)
	}
	h.answer(t, nil)
	if got := sd.next(); got != "WATCHDOG=1" {
		t.Fatalf("healthy tick sent %q", got)
	}
	h.answer(t, errors.New("coap loop stopped"))
	if got := sd.next(); got != "STATUS=unhealthy: coap loop stopped" {
		t.Fatalf("failing tick sent %q", got)
	}
	h.answer(t, errors.New("coap loop stopped"))
	// The next check has begun, so the previous tick has finished: it
	// must not have pinged.
	h.answer(t, errors.New("coap loop stopped"))
	sd.none()
	h.answer(t, nil)
	if got := sd.next(); got != "WATCHDOG=1\nSTATUS=running" {
		t.Fatalf("recovered tick sent %q", got)
	}
	cancel()
	h.answerUntil(t, done)
}

// TestWatchdogStopsAfterCancel: once ctx has ended, a tick that is also
// ready must not start another health check. With both cases ready, select
// picks at random, so 200 rounds make a missing ctx check all but certain
// to show.
func TestWatchdogStopsAfterCancel(t *testing.T) {
	// No notify socket: pings are no-ops, so none pile up unread.
	t.Setenv("NOTIFY_SOCKET", "")
	setWatchdog(t, 2*time.Millisecond)
	for range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		checks := 0
		health := func() error {
			checks++
			cancel()
			// Let the ticker fire while this check runs, so that both
			// ctx.Done and the tick are ready when the loop selects again.
			time.Sleep(5 * time.Millisecond)
			return nil
		}
		if err := NewNotifier(nil).RunWatchdog(ctx, health); err != nil {
			t.Fatal(err)
		}
		if checks != 1 {
			t.Fatalf("%d health checks after the first cancelled ctx, want 1", checks)
		}
	}
}

func TestWatchdogDisabled(t *testing.T) {
	newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "")
	if WatchdogInterval() != 0 {
		t.Fatal("watchdog enabled without WATCHDOG_USEC")
	}
	// Another process's watchdog is not ours.
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "1")
	if WatchdogInterval() != 0 {
		t.Fatal("watchdog enabled for another pid")
	}
	called := false
	if err := NewNotifier(nil).RunWatchdog(context.Background(), func() error { called = true; return nil }); err != nil || called {
		t.Errorf("RunWatchdog without a watchdog: err %v, health called %v", err, called)
	}
	setWatchdog(t, 3*time.Second)
	if got := WatchdogInterval(); got != 1500*time.Millisecond {
		t.Errorf("interval %s, want half of WatchdogSec", got)
	}
}

// fakeService is a Service whose readiness and shutdown the test controls.
type fakeService struct {
	ready       chan struct{}
	ignoreStop  bool
	stopped     chan struct{}
	failOnStart error
}

func (s *fakeService) Ready() <-chan struct{} { return s.ready }

func (s *fakeService) Run(ctx context.Context) error {
	if s.failOnStart != nil {
		return s.failOnStart
	}
	close(s.ready)
	<-ctx.Done()
	if s.ignoreStop {
		<-s.stopped
	}
	return ctx.Err()
}

func TestRunServiceLifecycle(t *testing.T) {
	sd := newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "")
	svc := &fakeService{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- RunService(ctx, svc, nil, SystemdConfig{Watchdog: true, ShutdownTimeout: time.Minute}, nil)
	}()
	if got := sd.next(); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	cancel() // SIGTERM
	if got := sd.next(); !strings.HasPrefix(got, "STOPPING=1") {
		t.Fatalf("notification %q, want STOPPING=1", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("graceful shutdown returned %v", err)
	}
}

func TestRunServiceWatchdog(t *testing.T) {
	sd := newFakeSystemd(t)
	setWatchdog(t, 2*time.Millisecond)
	svc := &fakeService{ready: make(chan struct{})}
	h := newSteppedHealth()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- RunService(ctx, svc, h.check, SystemdConfig{Watchdog: true, ShutdownTimeout: time.Minute}, nil)
	}()
	if got := sd.next(); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	h.answer(t, nil)
	if got := sd.next(); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want a watchdog ping after READY", got)
	}
	cancel()
	h.answerUntil(t, done)
}

func TestRunServiceShutdownIsBounded(t *testing.T) {
	sd := newFakeSystemd(t)
	svc := &fakeService{ready: make(chan struct{}), ignoreStop: true, stopped: make(chan struct{})}
	defer close(svc.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- RunService(ctx, svc, nil, SystemdConfig{ShutdownTimeout: 20 * time.Millisecond}, nil)
	}()
	sd.next()
	cancel()
	if err := <-done; !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("hung shutdown returned %v, want ErrShutdownTimeout", err)
	}
}

func TestRunServiceStartFailure(t *testing.T) {
	sd := newFakeSystemd(t)
	boom := errors.New("listen udp :5683: address already in use")
	svc := &fakeService{ready: make(chan struct{}), failOnStart: boom}
	if err := RunService(context.Background(), svc, nil, DefaultConfig().Systemd, nil); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the start error", err)
	}
	sd.none() // never READY
}

// TestListenersSocketActivation runs the test binary again with two sockets
// passed the way systemd passes them (fds 3 and 4, LISTEN_FDS,
// LISTEN_FDNAMES), since LISTEN_PID must name the receiving process.
func TestListenersSocketActivation(t *testing.T) {
	if os.Getenv("FLOWNEXUS_ACTIVATION_CHILD") == "1" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		s, err := Listeners()
		if err != nil {
			t.Fatal(err)
		}
		l, pc := s.Listeners["http"], s.PacketConns["coap"]
		if l == nil || pc == nil || len(s.Listeners) != 1 || len(s.PacketConns) != 1 {
			t.Fatalf("got %v", s)
		}
		if os.Getenv("LISTEN_FDS") != "" {
			t.Fatal("LISTEN_FDS left set")
		}
		// Prove they are the passed sockets: the parent connects to them.
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("http ok"))
		c.Close()
		buf := make([]byte, 64)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
		return
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	tf, _ := tl.(*net.TCPListener).File()
	uf, _ := uc.(*net.UDPConn).File()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestListenersSocketActivation$")
	cmd.Env = append(os.Environ(), "FLOWNEXUS_ACTIVATION_CHILD=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=http:coap")
	cmd.ExtraFiles = []*os.File{tf, uf}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tf.Close()
	uf.Close()

	c, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	if string(buf[:n]) != "http ok" {
		t.Errorf("stream socket answered %q", buf[:n])
	}
	c.Close()
	u, err := net.Dial("udp", uc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("ping"))
	u.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err = u.Read(buf)
	if err != nil || string(buf[:n]) != "echo ping" {
		t.Errorf("datagram socket answered %q, %v", buf[:n], err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestListenersWithoutActivation(t *testing.T) {
	t.Setenv("LISTEN_PID", "")
	t.Setenv("LISTEN_FDS", "")
	s, err := Listeners()
	if err != nil || len(s.Listeners) != 0 || len(s.PacketConns) != 0 {
		t.Fatalf("got %v, %v", s, err)
	}
}
