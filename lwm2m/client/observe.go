package client

import (
	"math"
	"sync"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// Observation is one active Observe or Observe-Composite the server started
// on this client (Core §6.4.1, RFC 7641). Its schedule follows the
// notification attributes of its paths (Core §5.1.2); a timer, not a
// goroutine, carries it.
type Observation struct {
	// Token is the CoAP token the server chose; notifications carry it.
	Token string
	// Paths is the observed path, or the paths of a composite observation.
	Paths []lwm2m.Path
	// Composite marks Observe-Composite (FETCH with a path list).
	Composite bool
	// Format is the content format notifications are encoded in.
	Format lwm2m.Format
	// Handle is the CoAP layer's handle for sending notifications.
	Handle any

	eng       *observeEngine
	timer     *time.Timer
	lastSent  time.Time
	lastEval  time.Time
	last      []lwm2m.Record // values in the last notification
	prev      []lwm2m.Record // values at the last evaluation (edge detection)
	pending   bool           // a qualifying change waits for pmin
	cancelled bool
	live      bool // the response establishing it has gone out
	early     bool // a change came in before it was live
}

// emitFunc sends one notification. con asks for a confirmable one.
type emitFunc func(o *Observation, recs []lwm2m.Record, con bool)

// observeEngine keeps the notification attributes and the observations and
// decides when each notification is due (Core §5.1.2, §6.4).
type observeEngine struct {
	tree *Tree
	now  func() time.Time
	emit emitFunc
	// defaults returns pmin and pmax from the Server object (Core §E.2,
	// resources 2 and 3) for observations without such attributes.
	defaults func() (pmin, pmax int64)

	mu    sync.Mutex
	attrs map[lwm2m.Path]lwm2m.Attributes
	obs   map[string]*Observation
}

func newObserveEngine(t *Tree, emit emitFunc) *observeEngine {
	e := &observeEngine{
		tree:  t,
		now:   time.Now,
		emit:  emit,
		attrs: make(map[lwm2m.Path]lwm2m.Attributes),
		obs:   make(map[string]*Observation),
	}
	e.defaults = e.serverDefaults
	t.SetOnChange(e.changed)
	return e
}

// serverDefaults reads Default Minimum/Maximum Period from the first Server
// object instance.
func (e *observeEngine) serverDefaults() (pmin, pmax int64) {
	o, ok := e.tree.Object(1)
	if !ok {
		return 0, 0
	}
	ids := o.Instances()
	if len(ids) == 0 {
		return 0, 0
	}
	recs, err := o.Read(lwm2m.NewPath(1, ids[0]))
	if err != nil {
		return 0, 0
	}
	for _, r := range recs {
		switch r.Path.ResourceID() {
		case 2:
			pmin = r.Value.Int()
		case 3:
			pmax = r.Value.Int()
		}
	}
	return pmin, pmax
}

// writeAttributes applies a Write-Attributes update u to p. The merged
// result must still be consistent (lt + 2*st < gt even when only one of
// them changes).
func (e *observeEngine) writeAttributes(p lwm2m.Path, u lwm2m.Attributes, rm *lwm2m.ResourceModel) error {
	e.mu.Lock()
	next := e.attrs[p].Merge(u)
	if err := checkAttributes(p, next, rm); err != nil {
		e.mu.Unlock()
		return err
	}
	if next.IsZero() {
		delete(e.attrs, p)
	} else {
		e.attrs[p] = next
	}
	var affected []*Observation
	for _, o := range e.obs {
		for _, op := range o.Paths {
			if p.Contains(op) || op.Contains(p) {
				affected = append(affected, o)
				break
			}
		}
	}
	e.mu.Unlock()
	// New periods take effect from now on.
	for _, o := range affected {
		e.schedule(o)
	}
	return nil
}

// attrsAt returns the attributes stored exactly at p.
func (e *observeEngine) attrsAt(p lwm2m.Path) lwm2m.Attributes {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.attrs[p]
}

// effective merges the attributes of p's levels, object first. e.mu is held.
func (e *observeEngine) effective(p lwm2m.Path) lwm2m.Attributes {
	var a lwm2m.Attributes
	for n := 1; n <= p.Len(); n++ {
		a = a.Merge(e.attrs[p.Truncate(n)])
	}
	return a
}

// periods returns pmin, pmax, epmin, epmax (seconds; 0 = none) and con for
// o. For a composite observation the most eager period of its paths wins.
func (e *observeEngine) periods(o *Observation) (pmin, pmax, epmin, epmax int64, con bool) {
	dmin, dmax := e.defaults()
	e.mu.Lock()
	defer e.mu.Unlock()
	pmin, pmax = math.MaxInt64, 0
	for _, p := range o.Paths {
		a := e.effective(p)
		mn, mx := dmin, dmax
		if a.PMin.IsSet() {
			mn = int64(a.PMin.Value)
		}
		if a.PMax.IsSet() {
			mx = int64(a.PMax.Value)
		}
		pmin = min(pmin, mn)
		if mx > 0 && mx >= mn && (pmax == 0 || mx < pmax) {
			pmax = mx
		}
		if a.EPMin.IsSet() {
			epmin = max(epmin, int64(a.EPMin.Value))
		}
		if v := int64(a.EPMax.Value); a.EPMax.IsSet() && v > 0 && (epmax == 0 || v < epmax) {
			epmax = v
		}
		if a.Con.IsSet() && a.Con.Value == 1 {
			con = true
		}
	}
	if pmin == math.MaxInt64 {
		pmin = 0
	}
	return pmin, pmax, epmin, epmax, con
}

// start records a new observation whose first answer (the Read) carried
// recs, and schedules it. A previous observation with the same token is
// replaced (RFC 7641 §4.1: re-registration). It notifies nothing until
// activate: a notification must not overtake the response that
// establishes the observation.
func (e *observeEngine) start(o *Observation, recs []lwm2m.Record) {
	o.eng = e
	now := e.now()
	o.lastSent, o.lastEval, o.last, o.prev = now, now, recs, recs
	e.mu.Lock()
	old := e.obs[o.Token]
	e.obs[o.Token] = o
	e.mu.Unlock()
	if old != nil {
		old.stop()
	}
}

// activate lets o notify once its first response is out, and catches up on
// a change that came in between.
func (e *observeEngine) activate(o *Observation) {
	e.mu.Lock()
	o.live = true
	early := o.early
	e.mu.Unlock()
	if early {
		e.evaluate(o, false)
	} else {
		e.schedule(o)
	}
}

// cancel ends the observation with token (RST, Observe=1, or the server
// forgetting it).
func (e *observeEngine) cancel(token string) bool {
	e.mu.Lock()
	o := e.obs[token]
	delete(e.obs, token)
	e.mu.Unlock()
	if o != nil {
		o.stop()
	}
	return o != nil
}

// cancelAll ends every observation: a new Register starts afresh (Core §6.2.1).
func (e *observeEngine) cancelAll() {
	e.mu.Lock()
	all := e.obs
	e.obs = make(map[string]*Observation)
	e.mu.Unlock()
	for _, o := range all {
		o.stop()
	}
}

// observations returns the active observations.
func (e *observeEngine) observations() []*Observation {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Observation, 0, len(e.obs))
	for _, o := range e.obs {
		out = append(out, o)
	}
	return out
}

func (o *Observation) stop() {
	o.eng.mu.Lock()
	o.cancelled = true
	if o.timer != nil {
		o.timer.Stop()
	}
	o.eng.mu.Unlock()
}

// changed is the tree's change callback: every observation overlapping a
// changed path is evaluated.
func (e *observeEngine) changed(paths ...lwm2m.Path) {
	e.mu.Lock()
	var hit []*Observation
	for _, o := range e.obs {
	match:
		for _, op := range o.Paths {
			for _, p := range paths {
				if op.IsRoot() || p.Contains(op) || op.Contains(p) {
					hit = append(hit, o)
					break match
				}
			}
		}
	}
	e.mu.Unlock()
	for _, o := range hit {
		e.evaluate(o, false)
	}
}

// evaluate reads o's values and notifies when the attributes say so; force
// is the pmax deadline, which notifies regardless of change.
func (e *observeEngine) evaluate(o *Observation, force bool) {
	pmin, pmax, epmin, _, con := e.periods(o)
	now := e.now()
	e.mu.Lock()
	if o.cancelled || !o.live {
		o.early = true
		e.mu.Unlock()
		return
	}
	sincePmax := now.Sub(o.lastSent)
	if !force && epmin > 0 && now.Sub(o.lastEval) < secs(epmin) {
		// Evaluation is rate limited by epmin: look again when it allows.
		o.pending = true
		e.mu.Unlock()
		e.schedule(o)
		return
	}
	o.lastEval = now
	last, prev := o.last, o.prev
	e.mu.Unlock()

	recs, err := e.read(o)
	if err != nil {
		// The observed path went away (instance deleted): the observation
		// ends with the error notification the CoAP layer sends.
		e.cancel(o.Token)
		e.emit(o, nil, true)
		return
	}
	qualifies := force || (pmax > 0 && sincePmax >= secs(pmax))
	if !qualifies {
		qualifies = e.qualifies(o, last, prev, recs)
	}
	e.mu.Lock()
	o.prev = recs
	if o.cancelled {
		e.mu.Unlock()
		return
	}
	if !qualifies {
		// Whatever was held back has settled where it was last notified.
		o.pending = false
		e.mu.Unlock()
		e.schedule(o)
		return
	}
	if now.Sub(o.lastSent) < secs(pmin) {
		// A change inside pmin is held back until pmin has passed.
		o.pending = true
		e.mu.Unlock()
		e.schedule(o)
		return
	}
	o.pending = false
	o.lastSent = now
	o.last = recs
	e.mu.Unlock()
	e.emit(o, recs, con)
	e.schedule(o)
}

func (e *observeEngine) read(o *Observation) ([]lwm2m.Record, error) {
	if o.Composite {
		return e.tree.ReadComposite(o.Paths)
	}
	return e.tree.Read(o.Paths[0])
}

// qualifies applies the change conditions (Core §5.1.2): for a numeric
// resource with gt/lt/st, crossing a threshold or moving by at least st
// since the last notified value (last); for a boolean resource with edge, the
// chosen transition; otherwise any change of value.
func (e *observeEngine) qualifies(o *Observation, last, prev, now []lwm2m.Record) bool {
	if len(o.Paths) == 1 && o.Paths[0].Len() >= 3 && len(last) == 1 && len(now) == 1 && last[0].Path == now[0].Path {
		e.mu.Lock()
		a := e.effective(o.Paths[0])
		e.mu.Unlock()
		if a.GT.IsSet() || a.LT.IsSet() || a.ST.IsSet() {
			before, ok1 := last[0].Value.Number()
			cur, ok2 := now[0].Value.Number()
			if ok1 && ok2 {
				if a.GT.IsSet() && (before > a.GT.Value) != (cur > a.GT.Value) {
					return true
				}
				if a.LT.IsSet() && (before < a.LT.Value) != (cur < a.LT.Value) {
					return true
				}
				if a.ST.IsSet() && math.Abs(cur-before) >= a.ST.Value {
					return true
				}
				return false
			}
		}
		if a.Edge.IsSet() && len(prev) == 1 && prev[0].Value.Type() == lwm2m.TypeBoolean {
			// An edge is a transition from the previous sample, whatever was
			// last notified.
			was, cur := prev[0].Value.Bool(), now[0].Value.Bool()
			return was != cur && cur == (a.Edge.Value == 1)
		}
	}
	if len(last) != len(now) {
		return true
	}
	for i := range now {
		if now[i].Path != last[i].Path || !now[i].Value.Equal(last[i].Value) {
			return true
		}
	}
	return false
}

// schedule arms o's timer for the earliest of: pmin passing with a change
// pending, epmin passing with an evaluation pending, pmax, and epmax (which
// re-reads values that change without telling, such as computed ones).
func (e *observeEngine) schedule(o *Observation) {
	pmin, pmax, epmin, epmax, _ := e.periods(o)
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.cancelled {
		return
	}
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if o.pending {
		// A held change may go once both pmin (since the last notification)
		// and epmin (since the last evaluation) allow it.
		at := o.lastSent.Add(secs(pmin))
		if ev := o.lastEval.Add(secs(epmin)); epmin > 0 && ev.After(at) {
			at = ev
		}
		consider(at)
	}
	if pmax > 0 {
		consider(o.lastSent.Add(secs(pmax)))
	}
	if epmax > 0 {
		consider(o.lastEval.Add(secs(epmax)))
	}
	if next.IsZero() {
		if o.timer != nil {
			o.timer.Stop()
		}
		return
	}
	d := max(next.Sub(e.now()), 0)
	if o.timer == nil {
		o.timer = time.AfterFunc(d, func() { e.fire(o) })
	} else {
		o.timer.Reset(d)
	}
}

// fire runs when o's timer expires.
func (e *observeEngine) fire(o *Observation) {
	_, pmax, _, _, _ := e.periods(o)
	e.mu.Lock()
	due := pmax > 0 && !e.now().Before(o.lastSent.Add(secs(pmax)))
	e.mu.Unlock()
	e.evaluate(o, due)
}

func secs(n int64) time.Duration { return time.Duration(n) * time.Second }

// effectiveAt returns the attributes that apply at p from every level.
func (e *observeEngine) effectiveAt(p lwm2m.Path) lwm2m.Attributes {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.effective(p)
}
