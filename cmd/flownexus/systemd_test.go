package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this binary as flownexus itself, so that the
// real signal handling of main is exercised in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("FLOWNEXUS_TEST_MAIN") == "1" {
		os.Args = append([]string{"flownexus"}, strings.Fields(os.Getenv("FLOWNEXUS_TEST_ARGS"))...)
		main()
		return
	}
	os.Exit(m.Run())
}

// TestServeUnderSystemdProtocol starts `flownexus serve` as systemd would
// (NOTIFY_SOCKET, WATCHDOG_USEC), checks that READY comes only once /healthz
// answers, that the watchdog is pinged, and that SIGTERM gives STOPPING and a
// clean exit.
func TestServeUnderSystemdProtocol(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := l.Addr().String()
	l.Close()
	cfgFile := filepath.Join(t.TempDir(), "test.toml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`data_dir = %q
[listen]
http = %q
coap = "127.0.0.1:0"
coaps = "127.0.0.1:0"
bootstrap = "127.0.0.1:0"
bootstrap_dtls = "127.0.0.1:0"
[log]
format = "json"
`, t.TempDir(), httpAddr)), 0o644)

	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = append(os.Environ(),
		"FLOWNEXUS_TEST_MAIN=1",
		"FLOWNEXUS_TEST_ARGS=serve --config "+cfgFile,
		"NOTIFY_SOCKET="+sock,
		"WATCHDOG_USEC=200000",
	)
	// Without WATCHDOG_PID the watchdog applies to the process that reads
	// WATCHDOG_USEC (sd_watchdog_enabled(3)), the child here.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	next := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v\n%s", err, logs.String())
		}
		return string(buf[:n])
	}
	if got := next(); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// READY means the listeners are bound: /healthz answers at once.
	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz right after READY: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz right after READY: %s", resp.Status)
	}
	if got := next(); got != "WATCHDOG=1" {
		t.Fatalf("notification %q, want a watchdog ping", got)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		got := next()
		if got == "WATCHDOG=1" {
			continue // a ping already under way
		}
		if !strings.HasPrefix(got, "STOPPING=1") {
			t.Fatalf("notification %q, want STOPPING=1", got)
		}
		break
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM\n%s", logs.String())
	}
}

// syncBuffer collects a child's output while the test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
