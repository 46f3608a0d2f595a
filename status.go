package drainhttp

import (
	"net/http"
	"time"
)

// Status is a snapshot of a Server's shutdown and connections, for status
// pages (drainhttp/admin), metrics (drainhttp/drainprom) and tests.
type Status struct {
	// Phase is where the server is in its shutdown, and Timeline every
	// phase it has entered, PhaseServing first, with when and why.
	Phase    Phase         `json:"phase"`
	Timeline []PhaseChange `json:"timeline"`
	// Ready is what ReadyHandler answers: true while new traffic is
	// welcome.
	Ready bool `json:"ready"`
	// Handoff is true once DrainAfterHandoff has been called: another
	// process serves the address now.
	Handoff bool `json:"handoff"`
	// Drain is the Manager's view of the drain window: its strategy,
	// start, deadline and progress, and the health check.
	Drain DrainStatus `json:"drain"`
	// DrainTime, DrainTimeout and ShutdownDelay are the server's options,
	// after defaults.
	DrainTime     time.Duration `json:"drain_time"`
	DrainTimeout  time.Duration `json:"drain_timeout"`
	ShutdownDelay time.Duration `json:"shutdown_delay"`
	// Adaptive is the adaptive shutdown's view (nil without Adaptive).
	Adaptive *AdaptiveStatus `json:"adaptive,omitempty"`
	// Now is the server's clock at the snapshot.
	Now time.Time `json:"now"`
	// Connections are the connection counters (Stats).
	Connections Stats `json:"connections"`
}

// AdaptiveStatus is what an adaptive shutdown has seen.
type AdaptiveStatus struct {
	// Probes and Quiet are the options, after defaults.
	Probes int           `json:"probes"`
	Quiet  time.Duration `json:"quiet"`
	// ProbeSources maps each probe source (remote IP) to the number of
	// 503 answers it has had since the drain started.
	ProbeSources map[string]int `json:"probe_sources"`
	// LastTraffic is when the newest connection that was not a probe's
	// arrived; zero if none has.
	LastTraffic time.Time `json:"last_traffic"`
}

// Status returns a snapshot of the server's shutdown. It returns the zero
// Status if the options are invalid.
func (s *Server) Status() Status {
	if s.init() != nil {
		return Status{}
	}
	st := Status{
		Timeline:      s.phases.changes(),
		Ready:         s.Ready(),
		Handoff:       s.handoff.Load(),
		Drain:         s.mgr.Status(),
		DrainTime:     s.mgr.opts.DrainTime,
		DrainTimeout:  s.tracker.drainTimeout,
		ShutdownDelay: s.ShutdownDelay,
		Now:           s.tracker.clock.Now(),
		Connections:   s.Stats(),
	}
	st.Phase = st.Timeline[len(st.Timeline)-1].Phase
	if a := s.adaptive; a != nil {
		as := &AdaptiveStatus{Probes: a.opts.Probes, Quiet: a.opts.Quiet, ProbeSources: make(map[string]int)}
		a.mu.Lock()
		for k, v := range a.sources {
			as.ProbeSources[k] = v.failed
		}
		as.LastTraffic = a.lastTraffic
		a.mu.Unlock()
		st.Adaptive = as
	}
	return st
}

// Served reports whether r arrived on a connection that s serves. An admin
// handler uses it to refuse being served by the very server it
// administers, which would drain it along with everything else.
func (s *Server) Served(r *http.Request) bool {
	c := connFromContext(r.Context())
	return c != nil && s.init() == nil && c.t == s.tracker
}
