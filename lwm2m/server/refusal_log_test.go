package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A Register the handler refuses (4.xx) is the handler's to log; one the
// server side fails to record (5.00) is a warning of the server's own.
func TestRegisterRefusalLogLevel(t *testing.T) {
	var out logBuffer
	rec := newRecorder()
	s := New(testConfig(), WithHandler(rec),
		WithLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, s, tr)
	d := newDevice(t, tr.LocalAddr().String())
	for _, c := range []struct {
		err  error
		want coap.Code
		line string // the line at level info or above, "" for none
	}{
		{fmt.Errorf("identity mismatch: %w", ErrForbidden), coap.Forbidden, ""},
		{fmt.Errorf("bad name: %w", ErrBadRequest), coap.BadRequest, ""},
		{errors.New("database down"), coap.InternalServerError, `level=WARN msg="registration failed" component=lwm2m-server endpoint=refused`},
	} {
		before := len(out.String())
		rec.mu.Lock()
		rec.refuse = c.err
		rec.mu.Unlock()
		if resp := d.req(coap.POST, "/rd", []string{"ep=refused"}, []byte("</3/0>"), cfLinks); resp.Code != c.want {
			t.Fatalf("%v: %s, want %s", c.err, resp.Code, c.want)
		}
		got := grepLines(out.String()[before:], "endpoint=refused") // not the asynchronous "listening"
		if c.line == "" && got != "" {
			t.Errorf("%v: the server logged %q; the handler logs its refusals", c.err, got)
		}
		if c.line != "" && (!strings.Contains(got, c.line) || !strings.Contains(got, "database down")) {
			t.Errorf("%v: logged %q, want a line with %q and the error", c.err, got, c.line)
		}
	}
}

// grepLines keeps the lines of log that contain sub.
func grepLines(log, sub string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(log, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
