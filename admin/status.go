package admin

import (
	"runtime"
	"time"

	"github.com/drainhttp/drainhttp"
)

// Status is the JSON document that New's handler serves on GET /status, in
// answer to its POST endpoints and inside the status page: a snapshot of a
// drainhttp.Server's shutdown and connections. Durations are Go duration
// strings ("10s", "1m30s"), times RFC 3339 on the server's clock. Its zero
// value describes nothing; make one with Snapshot.
type Status struct {
	// State is where the server is in its shutdown, derived from Phase,
	// with the names that drainhttp.Server.AdminHandler used, for the
	// dashboards and scripts that know them:
	//   - "serving": PhaseServing, no shutdown has started (the health
	//     check may be failed: see Ready); "draining" instead if the
	//     server's Manager was drained on its own
	//     (Manager().StartDrainSequence), which never ends the phase: the
	//     server goes on accepting;
	//   - "shutdown_delay": PhaseNotReady, the server serves normally while
	//     ReadyHandler fails;
	//   - "draining": PhaseWindow, the drain window runs and connections
	//     are told to close as the Strategy says;
	//   - "closing": PhaseClosingListeners and PhaseClosingConns, the
	//     window is over, the listeners close and the remaining
	//     connections end, each by its DrainTimeout deadline;
	//   - "drained": PhaseDrained, the drain has finished;
	//   - "closed": PhaseClosed, Shutdown or Close ran without a drain.
	State string `json:"state"`
	// Phase is the server's phase (drainhttp.Phase's name: "serving",
	// "not_ready", "window", "closing_listeners", "closing_connections",
	// "drained" or "closed"), and Timeline every phase it has entered,
	// "serving" first, with when and why (drainhttp.PhaseChange).
	Phase    string        `json:"phase"`
	Timeline []PhaseChange `json:"timeline"`
	// Ready is what ReadyHandler answers: true while new traffic is
	// welcome.
	Ready bool `json:"ready"`
	// HealthCheckFailed is true between POST /healthcheck/fail and POST
	// /healthcheck/ok (or the Manager's HealthCheckFail and HealthCheckOK).
	HealthCheckFailed bool `json:"health_check_failed"`
	// Handoff is true once the server's listeners were handed over to
	// another process (DrainAfterHandoff, a hot restart).
	Handoff bool `json:"handoff"`
	// Done is true once the server has finished (Server.Done is closed):
	// a drain, Shutdown or Close has returned.
	Done bool `json:"done"`
	// Strategy is "gradual" or "immediate": that of the running drain, or
	// the configured one before any drain. An immediate drain requested
	// during a gradual one shows as "immediate".
	Strategy string `json:"strategy"`
	// DrainTime, DrainTimeout and ShutdownDelay are the server's options,
	// after defaults.
	DrainTime     string `json:"drain_time"`
	DrainTimeout  string `json:"drain_timeout"`
	ShutdownDelay string `json:"shutdown_delay"`
	// Progress is the elapsed fraction of the drain window, from 0 before
	// the window to 1 at its end (at once for a drain cut short).
	Progress float64 `json:"progress"`
	// Started and Deadline bound the drain window (jitter included), and
	// TimeLeftSeconds is Deadline minus Now, not below 0; all three are
	// null until the window has started, so during the shutdown delay.
	Started         *time.Time `json:"started"`
	Deadline        *time.Time `json:"deadline"`
	TimeLeftSeconds *float64   `json:"time_left_seconds"`
	// Now is the server's clock at the snapshot, to compare the other
	// times with without trusting the reader's clock.
	Now time.Time `json:"now"`
	// Listeners is the number of listeners the server accepts on.
	Listeners int `json:"listeners"`
	// Adaptive is what the adaptive shutdown has seen; absent unless the
	// server sets Adaptive.
	Adaptive *AdaptiveStatus `json:"adaptive,omitempty"`
	// Connections are the server's connection counters (Server.Stats).
	Connections drainhttp.Stats `json:"connections"`
}

// PhaseChange is one entry of Status.Timeline: drainhttp.PhaseChange with
// the phase by name, so that the document also decodes.
type PhaseChange struct {
	// Phase is the name of the phase that started.
	Phase string `json:"phase"`
	// At is when it started, on the server's clock.
	At time.Time `json:"at"`
	// Cause says what ended the phase before (see drainhttp.PhaseChange);
	// empty for "serving".
	Cause string `json:"cause"`
}

// AdaptiveStatus is drainhttp.AdaptiveStatus with its duration as a string
// and a zero time as null.
type AdaptiveStatus struct {
	// Probes and Quiet are the adaptive shutdown's options, after
	// defaults.
	Probes int    `json:"probes"`
	Quiet  string `json:"quiet"`
	// ProbeSources maps each probe source (remote IP) to the number of
	// 503 answers it has had since the drain started.
	ProbeSources map[string]int `json:"probe_sources"`
	// LastTraffic is when the newest connection that was not a probe's
	// arrived; null if none has.
	LastTraffic *time.Time `json:"last_traffic"`
}

// snapshotTries bounds how often Snapshot takes the server's Status again
// when it caught the server between entering PhaseWindow and starting its
// Manager's window: a few instructions apart, so one more try nearly
// always suffices, and the bound keeps a stuck server from stalling
// /status.
const snapshotTries = 100

// Snapshot returns the Status of s now: what GET /status would answer.
func Snapshot(s *drainhttp.Server) Status {
	// Done first: once it is closed, the phase is final too.
	done := isDone(s)
	st := s.Status()
	for range snapshotTries {
		if st.Phase != drainhttp.PhaseWindow || st.Drain.Draining {
			break
		}
		runtime.Gosched() // let the drain's goroutine start the window
		st = s.Status()
	}
	out := Status{
		State:             state(st.Phase, st.Drain.Draining),
		Phase:             st.Phase.String(),
		Timeline:          make([]PhaseChange, len(st.Timeline)),
		Ready:             st.Ready,
		HealthCheckFailed: st.Drain.HealthCheckFailed,
		Handoff:           st.Handoff,
		Done:              done,
		Strategy:          st.Drain.Strategy.String(),
		DrainTime:         st.DrainTime.String(),
		DrainTimeout:      st.DrainTimeout.String(),
		ShutdownDelay:     st.ShutdownDelay.String(),
		Progress:          st.Drain.Progress,
		Now:               st.Now,
		Listeners:         st.Connections.Listeners,
		Connections:       st.Connections,
	}
	for i, pc := range st.Timeline {
		out.Timeline[i] = PhaseChange{Phase: pc.Phase.String(), At: pc.At, Cause: pc.Cause}
	}
	if st.Drain.Draining {
		start, deadline := st.Drain.Start, st.Drain.Deadline
		left := max(deadline.Sub(st.Now), 0).Seconds()
		out.Started, out.Deadline, out.TimeLeftSeconds = &start, &deadline, &left
	}
	if a := st.Adaptive; a != nil {
		as := &AdaptiveStatus{Probes: a.Probes, Quiet: a.Quiet.String(), ProbeSources: a.ProbeSources}
		if as.ProbeSources == nil {
			as.ProbeSources = map[string]int{}
		}
		if !a.LastTraffic.IsZero() {
			t := a.LastTraffic
			as.LastTraffic = &t
		}
		out.Adaptive = as
	}
	return out
}

func isDone(s *drainhttp.Server) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// state is Status.State for a phase; managerDraining is the Manager's
// DrainStatus.Draining.
func state(p drainhttp.Phase, managerDraining bool) string {
	switch p {
	case drainhttp.PhaseServing:
		if managerDraining {
			return "draining"
		}
		return "serving"
	case drainhttp.PhaseNotReady:
		return "shutdown_delay"
	case drainhttp.PhaseWindow:
		return "draining"
	case drainhttp.PhaseClosingListeners, drainhttp.PhaseClosingConns:
		return "closing"
	case drainhttp.PhaseDrained:
		return "drained"
	case drainhttp.PhaseClosed:
		return "closed"
	}
	return p.String()
}
