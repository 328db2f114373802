package firmware

// The service is told about every uplink of every device (each Register,
// Update and notification of Object 5 or 3/0/3). Nearly all of them come
// from devices with nothing to do: looking each up in the store cost a
// query per Update (issue 15). The service keeps in memory the endpoints
// with an open deployment and looks at the others only in its sweep.

// watched is the set of endpoints that may have an open deployment, with
// the generation at which each was added: a step that found nothing open
// removes its endpoint only if nobody added it again meanwhile (a
// deployment created while the step read the store).
type watched struct {
	gen uint64
	eps map[string]uint64
}

// watch adds endpoints with (possibly) open deployments; s.mu is not held.
func (s *Service) watch(eps ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range eps {
		s.watched.gen++
		s.watched.eps[ep] = s.watched.gen
	}
}

// watching reports whether ep may have an open deployment, and the
// generation to give unwatch.
func (s *Service) watching(ep string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.watched.eps[ep]
	return g, ok
}

// unwatch drops ep if it was not added again since generation g.
func (s *Service) unwatch(ep string, g uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watched.eps[ep] == g {
		delete(s.watched.eps, ep)
	}
}

// Watched is the number of endpoints with an open deployment the service
// follows (for tests and metrics).
func (s *Service) Watched() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watched.eps)
}
