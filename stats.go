package drainhttp

import "net/http"

// Stats is a snapshot of a Server's connection counters, for status pages,
// metrics (drainhttp/drainprom reads it at scrape time) and tests.
type Stats struct {
	// Accepted counts connections accepted since the server started.
	Accepted uint64 `json:"accepted"`
	// Open counts open connections by protocol ("http/1.1", "h2", "h2c")
	// and http.ConnState ("new", "active", "idle", "hijacked"). Every
	// protocol and state is present. An HTTP/2 connection is active while
	// it has a stream open, as net/http reports it.
	Open map[string]map[string]int64 `json:"open"`
	// OpenTotal is the number of open connections.
	OpenTotal int64 `json:"open_total"`
	// Drained counts connections that closed after being told to close,
	// by why they were told, every reason present:
	//   - "decision": the drain decision answered true for one of their
	//     requests (Envoy: downstream_cx_drain_close), or RetryAfter
	//     answered one;
	//   - "proactive": their turn in the proactive part of the drain
	//     window came (idle HTTP/1.1 and every HTTP/2 connection), or they
	//     arrived during the drain and then went quiet;
	//   - "window_end": they were still open when the drain window ended;
	//   - "health_check": they served a request while the health check was
	//     failed (Manager.HealthCheckFail);
	//   - "max_age", "max_requests", "goaway_chance": ConnPolicy (Envoy:
	//     downstream_cx_max_duration_reached,
	//     downstream_cx_max_requests_reached);
	//   - "shutdown": Shutdown sent them a GOAWAY;
	//   - "close": Close, or a drain cut short by its context, closed them
	//     before anything else had told them to.
	Drained map[string]uint64 `json:"drained"`
	// Forced counts connections the server closed by force while they
	// were busy (a request or stream in flight, or hijacked): at their
	// deadline, or when a drain was cut short or Close was called. They
	// are also counted in Drained. Idle connections closed at their
	// deadline (an HTTP/2 connection waiting out its GOAWAY, one that never
	// sent a request) are not forced.
	Forced uint64 `json:"forced"`
	// GoAways counts HTTP/2 connections sent a GOAWAY by the server's
	// drain or policies (each at most once): Envoy's http2.goaway_sent.
	GoAways uint64 `json:"goaways"`
	// Listeners is the number of listeners the server accepts on.
	Listeners int `json:"listeners"`
	// TLSHandshakeErrors counts TLS handshakes that failed, each of which
	// net/http logs. When ErrorLog is nil, the server logs a summary every
	// ten seconds instead of a line each (to Logger if set, else to the
	// standard logger, where net/http's lines go).
	TLSHandshakeErrors uint64 `json:"tls_handshake_errors"`
}

// trackedStates are the http.ConnState values a connection can be open in.
var trackedStates = [...]http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateHijacked}

// Stats returns a snapshot of the server's connection counters. It returns
// the zero Stats if the options are invalid.
func (s *Server) Stats() Stats {
	if s.init() != nil {
		return Stats{}
	}
	st := s.tracker.stats()
	s.mu.Lock()
	for l := range s.listeners {
		if l.accepting.Load() {
			st.Listeners++
		}
	}
	s.mu.Unlock()
	st.TLSHandshakeErrors = s.errLog.handshakes.Load()
	return st
}

func (t *tracker) stats() Stats {
	st := Stats{
		Accepted: t.accepted.Load(),
		Open:     make(map[string]map[string]int64, numProtocols),
		Drained:  make(map[string]uint64, numReasons),
		Forced:   t.forced.Load(),
		GoAways:  t.goaways.Load(),
	}
	// Counted here rather than on every transition: a scrape walks the
	// connections, and a request touches no shared counter.
	var open [numProtocols][http.StateClosed]int64
	for _, c := range t.snapshot() {
		if s := http.ConnState(c.state.Load()); s < http.StateClosed {
			open[c.protocol()][s]++
		}
	}
	for p := range connProtocol(numProtocols) {
		byState := make(map[string]int64, len(trackedStates))
		for _, s := range trackedStates {
			byState[s.String()] = open[p][s]
			st.OpenTotal += open[p][s]
		}
		st.Open[p.String()] = byState
	}
	for r := range drainReason(numReasons) {
		st.Drained[r.String()] = t.drained[r].Load()
	}
	return st
}
