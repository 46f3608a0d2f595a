package drainhttp

import "net/http"

// Stats is a snapshot of a Server's connections, for status pages and
// tests. Metrics read the same counters at scrape time.
type Stats struct {
	// Accepted counts connections accepted since the server started.
	Accepted uint64 `json:"accepted"`
	// Open counts open connections by protocol ("http/1.1", "h2", "h2c")
	// and state ("new", "active", "idle", "hijacked"). Every protocol and
	// state is present.
	Open map[string]map[string]int64 `json:"open"`
	// OpenTotal is the number of open connections.
	OpenTotal int64 `json:"open_total"`
	// Drained counts connections that closed after being drained, by
	// reason ("decision", "proactive"): Envoy's downstream_cx_drain_close.
	Drained map[string]uint64 `json:"drained"`
	// Forced counts connections the server closed by force while they
	// were busy (a request or stream in flight, or hijacked): at their
	// drain deadline, or when a drain was cut short or Close was called.
	// They are also counted in Drained. Idle connections closed at their
	// deadline (an HTTP/2 connection waiting out its GOAWAY, one that never
	// sent a request) are not forced.
	Forced uint64 `json:"forced"`
	// GoAways counts HTTP/2 connections sent a GOAWAY: Envoy's
	// http2.goaway_sent.
	GoAways uint64 `json:"goaways"`
}

// trackedStates are the http.ConnState values a connection can be open in.
var trackedStates = [...]http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateHijacked}

// Stats returns a snapshot of the server's connection counters. It returns
// the zero Stats if the options are invalid.
func (s *Server) Stats() Stats {
	if s.init() != nil {
		return Stats{}
	}
	return s.tracker.stats()
}

func (t *tracker) stats() Stats {
	st := Stats{
		Accepted: t.accepted.Load(),
		Open:     make(map[string]map[string]int64, numProtocols),
		Drained:  make(map[string]uint64, numReasons),
		Forced:   t.forced.Load(),
		GoAways:  t.goaways.Load(),
	}
	for p := range Protocol(numProtocols) {
		byState := make(map[string]int64, len(trackedStates))
		for _, s := range trackedStates {
			n := t.open[p][s].Load()
			byState[s.String()] = n
			st.OpenTotal += n
		}
		st.Open[p.String()] = byState
	}
	for r := range DrainReason(numReasons) {
		st.Drained[r.String()] = t.drained[r].Load()
	}
	return st
}
