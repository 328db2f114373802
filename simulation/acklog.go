package simulation

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
)

// Acked is one reading a server acknowledged to a device: a value of a
// confirmable notification whose ACK came back, or of a Send answered
// 2.04. Under acknowledge-after-commit every one of them must be in the
// server's database, whatever happened to the server afterwards.
type Acked struct {
	Endpoint string `json:"ep"`
	Path     string `json:"path"`
	// Value is the value's text form (lwm2m.Value.Text).
	Value string `json:"v"`
	// TimeMS is the reading's own time in Unix milliseconds, 0 when the
	// device sent none (the server stamps it on reception).
	TimeMS int64 `json:"t,omitempty"`
}

// AckLog keeps what servers acknowledged to devices, in memory and, when
// made with a writer, as JSON lines (flownexus-sim --ack-log).
type AckLog struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
	all []Acked
}

// NewAckLog returns a log; w may be nil (memory only).
func NewAckLog(w io.Writer) *AckLog {
	l := &AckLog{}
	if w != nil {
		l.w = bufio.NewWriter(w)
	}
	return l
}

// Record takes a client event; only acknowledged readings are kept. Each
// line is flushed at once, so a log read after the simulator is killed
// still holds everything acknowledged before.
func (l *AckLog) Record(e client.Event) {
	if len(e.Acked) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range e.Acked {
		a := Acked{Endpoint: e.Endpoint, Path: r.Path.String(), Value: r.Value.Text()}
		if !r.Time.IsZero() {
			a.TimeMS = r.Time.UnixMilli()
		}
		l.all = append(l.all, a)
		if l.w != nil && l.err == nil {
			b, _ := json.Marshal(a)
			b = append(b, '\n')
			if _, err := l.w.Write(b); err != nil {
				l.err = err
			}
		}
	}
	if l.w != nil && l.err == nil {
		l.err = l.w.Flush()
	}
}

// Acked returns a copy of what was acknowledged so far.
func (l *AckLog) Acked() []Acked {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Acked(nil), l.all...)
}

// Err is the first error writing the log.
func (l *AckLog) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// ReadAckLog reads a log written by an AckLog.
func ReadAckLog(r io.Reader) ([]Acked, error) {
	var out []Acked
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var a Acked
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return out, fmt.Errorf("simulation: ack log line %d: %w", n, err)
		}
		if _, err := lwm2m.ParsePath(a.Path); err != nil {
			return out, fmt.Errorf("simulation: ack log line %d: %w", n, err)
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// Missing compares acknowledged readings with what a server stored: it
// returns those of acked that stored does not hold, counting duplicates
// (a value acknowledged twice must be stored twice). stored lists the
// stored readings in the same form.
func Missing(acked, stored []Acked) []Acked {
	type key struct{ ep, path, v string }
	have := map[key]int{}
	for _, s := range stored {
		have[key{s.Endpoint, s.Path, s.Value}]++
	}
	var out []Acked
	for _, a := range acked {
		k := key{a.Endpoint, a.Path, a.Value}
		if have[k] > 0 {
			have[k]--
			continue
		}
		out = append(out, a)
	}
	return out
}
