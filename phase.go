package drainhttp

import (
	"sync"
	"time"
)

// Phase is where a Server is in its shutdown. A Drain goes through
// PhaseNotReady, PhaseWindow, PhaseClosingListeners, PhaseClosingConns and
// PhaseDrained, in that order; DrainAfterHandoff skips PhaseNotReady and
// PhaseClosingListeners (the listeners are handed over first); Shutdown
// goes through PhaseClosingListeners and PhaseClosingConns to PhaseClosed,
// and Close straight to PhaseClosed. A phase never comes back.
type Phase uint8

const (
	// PhaseServing: no shutdown has started.
	PhaseServing Phase = iota
	// PhaseNotReady: ReadyHandler fails while the server serves normally,
	// so that load balancers stop sending new traffic: the shutdown delay
	// (ShutdownDelay, or with Adaptive until the load balancer has let
	// go).
	PhaseNotReady
	// PhaseWindow: the drain window (DrainTime): connections are told to
	// close as the Strategy says, while the listeners still accept.
	PhaseWindow
	// PhaseClosingListeners: the window is over and every connection has
	// been told to close; the listeners stop taking connections, serve
	// what their accept queues hold, and close.
	PhaseClosingListeners
	// PhaseClosingConns: the listeners are closed; the remaining
	// connections end, each by its deadline.
	PhaseClosingConns
	// PhaseDrained: Drain has finished: no connection is left. Terminal.
	PhaseDrained
	// PhaseClosed: Shutdown or Close has finished, without a Drain.
	// Terminal.
	PhaseClosed
)

var phaseName = [...]string{
	PhaseServing:          "serving",
	PhaseNotReady:         "not_ready",
	PhaseWindow:           "window",
	PhaseClosingListeners: "closing_listeners",
	PhaseClosingConns:     "closing_connections",
	PhaseDrained:          "drained",
	PhaseClosed:           "closed",
}

// String returns the phase's name: "serving", "not_ready", "window",
// "closing_listeners", "closing_connections", "drained" or "closed".
func (p Phase) String() string {
	if int(p) < len(phaseName) {
		return phaseName[p]
	}
	return "Phase(?)"
}

// MarshalText makes a Phase its name in JSON.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// PhaseChange is the start of a phase.
type PhaseChange struct {
	// Phase is the phase that started.
	Phase Phase `json:"phase"`
	// At is when it started, on the server's clock.
	At time.Time `json:"at"`
	// Cause says what ended the phase before:
	//   - into PhaseNotReady: "drain";
	//   - into PhaseWindow: "no_delay" (ShutdownDelay zero), "delay" (it
	//     elapsed), "released" (Adaptive: the probes and the quiet period
	//     said the load balancer has let go), "max_delay" (Adaptive: they
	//     did not within ShutdownDelay), "hurried" (DrainNow, a second
	//     signal) or "handoff" (DrainAfterHandoff);
	//   - into PhaseClosingListeners: "window_end", "quiet" (Adaptive: no
	//     connection open and none arriving), "hurried", or "shutdown";
	//   - into PhaseClosingConns: "listeners_closed", or after a handoff
	//     "window_end", "empty" (no connection left) or "hurried";
	//   - into PhaseDrained and PhaseClosed: "no_connection_left",
	//     "canceled" (the context of Drain or Shutdown ended first) or
	//     "close".
	Cause string `json:"cause"`
}

// maxPhaseChanges bounds the timeline: one shutdown has at most six.
const maxPhaseChanges = 8

// phases is a server's phase and the timeline of its changes.
type phases struct {
	clock   Clock
	deliver sync.Mutex // held while watchers are called: they see changes in order

	mu       sync.Mutex
	timeline []PhaseChange
	watchers map[*func(PhaseChange)]struct{}
	onEnter  func(PhaseChange) // the server's own: logs
}

func (p *phases) init(clock Clock) {
	p.clock = clock
	p.timeline = []PhaseChange{{Phase: PhaseServing, At: clock.Now()}}
	p.watchers = make(map[*func(PhaseChange)]struct{})
}

// enter starts phase, if it comes after the current one, and tells the
// watchers, in the calling goroutine.
func (p *phases) enter(phase Phase, cause string) {
	p.deliver.Lock()
	defer p.deliver.Unlock()
	p.mu.Lock()
	if phase <= p.timeline[len(p.timeline)-1].Phase || len(p.timeline) == maxPhaseChanges {
		p.mu.Unlock()
		return
	}
	pc := PhaseChange{Phase: phase, At: p.clock.Now(), Cause: cause}
	p.timeline = append(p.timeline, pc)
	fs := make([]func(PhaseChange), 0, len(p.watchers)+1)
	if p.onEnter != nil {
		fs = append(fs, p.onEnter)
	}
	for f := range p.watchers {
		fs = append(fs, *f)
	}
	p.mu.Unlock()
	for _, f := range fs {
		f(pc)
	}
}

// changes returns a copy of the timeline.
func (p *phases) changes() []PhaseChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PhaseChange(nil), p.timeline...)
}

// OnPhase registers f to be called with every phase change from now on,
// in order, in the goroutine that makes it, and calls it at once with the
// current phase if that is not PhaseServing, so that a late registration
// misses nothing that matters. f must not block, nor call the server's
// Drain, Shutdown or Close (which would wait for f). Use it to deregister
// from a service registry at PhaseNotReady, flush a queue at
// PhaseClosingConns, or follow the shutdown in a test. The returned
// function unregisters f. OnPhase does nothing, and returns a function
// that does nothing, if the server's options are invalid, or f is nil.
func (s *Server) OnPhase(f func(PhaseChange)) (cancel func()) {
	if s.init() != nil || f == nil {
		return func() {}
	}
	p := &s.phases
	key := &f
	p.deliver.Lock()
	p.mu.Lock()
	p.watchers[key] = struct{}{}
	last := p.timeline[len(p.timeline)-1]
	p.mu.Unlock()
	if last.Phase != PhaseServing {
		f(last)
	}
	p.deliver.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.watchers, key)
		p.mu.Unlock()
	}
}
