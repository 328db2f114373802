package coap

import "sync"

// fairQueue holds the work waiting for the endpoint's workers: one FIFO
// per peer, served round-robin across peers. A peer's jobs run one at a
// time and in arrival order (RFC 7252 leaves ordering to the application;
// LwM2M needs a device's Register before its notifications), and a peer
// that has just had a job goes to the back of the line, so under overload
// every busy peer gets the same share of the workers whatever its address
// hashes to. Memory is bounded twice: at most maxPeer jobs per peer and
// maxTotal in all; a job over either limit is refused and the caller
// answers 5.03.
type fairQueue struct {
	mu       sync.Mutex
	cond     sync.Cond
	peers    map[PeerKey]*peerJobs // peers with queued or running work
	ready    []*peerJobs           // peers with work and none running, FIFO
	head     int
	total    int // queued jobs, not counting running ones
	maxTotal int
	maxPeer  int
	closed   bool
}

// peerJobs is one peer's FIFO.
type peerJobs struct {
	key     PeerKey
	jobs    []job
	head    int
	running bool // a worker runs one of its jobs
	ready   bool // it is in fairQueue.ready
}

func (p *peerJobs) queued() int { return len(p.jobs) - p.head }

func newFairQueue(maxTotal, maxPeer int) *fairQueue {
	q := &fairQueue{peers: make(map[PeerKey]*peerJobs), maxTotal: maxTotal, maxPeer: maxPeer}
	q.cond.L = &q.mu
	return q
}

// refusal says why push refused a job.
type refusal int

const (
	accepted refusal = iota
	refusedClosed
	refusedTotal
	refusedPeer
)

// push queues a job for peer k.
func (q *fairQueue) push(k PeerKey, j job) refusal {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return refusedClosed
	case q.total >= q.maxTotal:
		return refusedTotal
	}
	p := q.peers[k]
	if p == nil {
		p = &peerJobs{key: k}
		q.peers[k] = p
	} else if p.queued() >= q.maxPeer {
		return refusedPeer
	}
	p.jobs = append(p.jobs, j)
	q.total++
	if !p.running && !p.ready {
		q.markReadyLocked(p)
	}
	return accepted
}

func (q *fairQueue) markReadyLocked(p *peerJobs) {
	p.ready = true
	q.ready = append(q.ready, p)
	q.cond.Signal()
}

// pop waits for the next job, taking peers in turn. It returns false once
// the queue is closed and drained.
func (q *fairQueue) pop() (job, *peerJobs, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.ready) {
		if q.closed {
			return job{}, nil, false
		}
		q.cond.Wait()
	}
	p := q.ready[q.head]
	q.ready[q.head] = nil
	q.head++
	if q.head == len(q.ready) {
		q.ready, q.head = q.ready[:0], 0
	} else if q.head > 64 && q.head*2 > len(q.ready) {
		n := copy(q.ready, q.ready[q.head:])
		clear(q.ready[n:])
		q.ready, q.head = q.ready[:n], 0
	}
	p.ready, p.running = false, true
	j := p.jobs[p.head]
	p.jobs[p.head] = job{}
	p.head++
	q.total--
	return j, p, true
}

// done ends the running job of p: the peer goes to the back of the line if
// it has more, and is forgotten if not.
func (q *fairQueue) done(p *peerJobs) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p.running = false
	if p.queued() > 0 {
		if p.head > 32 && p.head*2 > len(p.jobs) {
			n := copy(p.jobs, p.jobs[p.head:])
			clear(p.jobs[n:])
			p.jobs, p.head = p.jobs[:n], 0
		}
		q.markReadyLocked(p)
		return
	}
	delete(q.peers, p.key)
}

// close wakes every worker; they drain what is queued and stop.
func (q *fairQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// len is the number of queued jobs.
func (q *fairQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}
