package appliance

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// linesWith counts the text-handler lines whose message is msg.
func linesWith(log, msg string) int {
	return strings.Count(log, ` msg="`+msg+`"`) + strings.Count(log, " msg="+msg+" ")
}

// frozenClock is a clock that moves only when the test moves it.
type frozenClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFrozenClock() *frozenClock {
	return &frozenClock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
}

func (c *frozenClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *frozenClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLogSamplerBoundsAFlood(t *testing.T) {
	var out lockedBuffer
	clk := newFrozenClock()
	s := newLogSampler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}), 10, clk.now)
	log := slog.New(s).With("component", "lifecycle") // WithAttrs shares the budget
	for i := range 1000 {
		log.Info("registered", "endpoint", i)
		if i%200 == 0 {
			log.Info("flownexus ready")
		}
	}
	got := out.String()
	if n := linesWith(got, "registered"); n != 100 {
		t.Errorf("%d registered lines written of 1000, want the burst of 100 (10 s at 10 a second)", n)
	}
	if n := linesWith(got, "flownexus ready"); n != 5 {
		t.Errorf("%d other lines, want all 5: only the listed messages are sampled", n)
	}
	if s.LeftOut() != 900 {
		t.Errorf("LeftOut %d, want 900", s.LeftOut())
	}

	clk.add(logSampleEvery)
	s.st.report(context.Background())
	got = out.String()
	if linesWith(got, "log lines left out") != 1 || !strings.Contains(got, "left_out=900") ||
		!strings.Contains(got, "message=registered") || !strings.Contains(got, "within=10s") {
		t.Fatalf("report of the left-out lines missing or wrong:\n%s", tail(got, 3))
	}

	// The bucket has refilled over the 10 s; another report without
	// anything left out writes nothing.
	out.mu.Lock()
	out.b.Reset()
	out.mu.Unlock()
	s.st.report(context.Background())
	for range 150 {
		log.Info("registered")
	}
	if n := linesWith(out.String(), "registered"); n != 100 {
		t.Errorf("after 10 s: %d lines written, want a new burst of 100", n)
	}
	clk.add(2 * time.Second)
	for range 50 {
		log.Info("registered")
	}
	if n := linesWith(out.String(), "registered"); n != 120 {
		t.Errorf("2 s later: %d lines written in all, want 120 (20 more at 10 a second)", n)
	}
	if linesWith(out.String(), "log lines left out") != 0 {
		t.Error("a report without anything left out wrote a line")
	}
}

func TestLogSamplerReportsAtTheHighestLevel(t *testing.T) {
	var out lockedBuffer
	clk := newFrozenClock()
	s := newLogSampler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}), 1, clk.now)
	log := slog.New(s)
	for range 12 {
		log.Info("registration refused", "by", "server")
		log.Warn("registration refused", "by", "lifecycle")
	}
	s.st.report(context.Background())
	got := out.String()
	if n := linesWith(got, "registration refused"); n != 10 {
		t.Errorf("%d lines, want the burst of 10", n)
	}
	if !regexp.MustCompile(`level=WARN msg="log lines left out".* message="registration refused" left_out=14`).MatchString(got) {
		t.Errorf("want a WARN report of 14 left out:\n%s", tail(got, 2))
	}
}

func TestLogSamplerOff(t *testing.T) {
	for _, c := range []struct {
		name      string
		level     slog.Level
		perSecond int
	}{{"zero rate", slog.LevelInfo, 0}, {"debug level", slog.LevelDebug, 10}} {
		t.Run(c.name, func(t *testing.T) {
			var out lockedBuffer
			s := newLogSampler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: c.level}), c.perSecond, newFrozenClock().now)
			log := slog.New(s)
			for range 500 {
				log.Warn("dtls handshake failed")
			}
			s.st.report(context.Background())
			if n := linesWith(out.String(), "dtls handshake failed"); n != 500 || s.LeftOut() != 0 {
				t.Errorf("%d of 500 lines written, %d left out; want every line", n, s.LeftOut())
			}
		})
	}
}

// Each sampled message must still be one the code logs: a message renamed
// in its package would silently escape the bound.
func TestLogSampledMessagesAreLogged(t *testing.T) {
	var src strings.Builder
	for _, dir := range []string{".", "../lwm2m/server", "../lwm2m/dtls", "../lwm2m/bootstrap"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") || filepath.Base(f) == "logsample.go" {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	for _, m := range logSampled {
		if !regexp.MustCompile(`(log\.(Info|Warn|Error)|followUpFailed)\("` + regexp.QuoteMeta(m) + `"`).MatchString(src.String()) {
			t.Errorf("no code logs %q", m)
		}
	}
}

// A fleet registering at once writes the burst of "registered" lines,
// then one line that counts the rest, which /metrics counts too.
func TestRegisterFloodLogBounded(t *testing.T) {
	var out lockedBuffer
	clk := newFrozenClock()
	cfg := testConfig(t)
	cfg.Log.DeviceLinesPerSecond = 1 // a burst of 10
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ta := startAppliance(t, cfg, WithLogger(logger), func(a *Appliance) { a.logClock = clk.now })
	ps, err := newPeers(40, ta.a.Addrs().CoAP, loopbackSources(1), "logflood-", linksPlain)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeers(ps)
	if n, err := registerAll(context.Background(), ps, 3600, false); err != nil || n != 40 {
		t.Fatalf("register: %d, %v", n, err)
	}
	if n := linesWith(out.String(), "registered"); n != 10 {
		t.Errorf("%d registered lines for 40 Registers, want the burst of 10", n)
	}
	_, metrics := ta.get("/metrics")
	if !strings.Contains(metrics, "\nflownexus_log_lines_left_out_total 30\n") {
		t.Errorf("metrics do not count 30 lines left out:\n%s", grepLines(metrics, "left_out"))
	}
	ta.shutdown() // the stop reports what is left
	// A report may have fallen due (real time) before the stop: add them up.
	reported := 0
	for _, m := range regexp.MustCompile(`message=registered left_out=(\d+)`).FindAllStringSubmatch(out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		reported += n
	}
	if reported != 30 {
		t.Errorf("reports count %d registered lines left out, want 30:\n%s", reported, grepLines(out.String(), "left out"))
	}
}

// A registration replaced while its follow-up Read waits for the device
// ends that follow-up with a debug line, not one at info, and without the
// requests that were still to come: the newer registration makes its own.
func TestReplacedFollowUpQuiet(t *testing.T) {
	var out lockedBuffer
	cfg := testConfig(t)
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ta := startAppliance(t, cfg, WithLogger(logger))
	ps, err := newPeers(8, ta.a.Addrs().CoAP, loopbackSources(1), "replaced-", linksObserve)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeers(ps)
	for _, p := range ps {
		p.silent = true // the Read of 3/0/3 after each Register waits
		if err := p.register(3600, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range ps {
		eventually(t, "the Read of the first registration", func() bool { return p.requests.Load() > 0 })
		if err := p.register(3600, 5*time.Second); err != nil { // replaces the registration
			t.Fatal(err)
		}
	}
	ended := regexp.MustCompile(`level=DEBUG msg="firmware version read failed" .*registration ended`)
	eventually(t, "the replaced follow-ups to end", func() bool { return len(ended.FindAllString(out.String(), -1)) == 8 })
	got := out.String()
	for _, line := range []string{`level=INFO msg="firmware version read failed"`, `msg="auto-observe failed"`} {
		if n := strings.Count(got, line); n != 0 {
			t.Errorf("%d lines %s for replaced registrations:\n%s", n, line, grepLines(got, "failed"))
		}
	}
	if n := strings.Count(got, `level=INFO msg=registered`); n != 16 {
		t.Errorf("%d registered lines, want 16", n)
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
