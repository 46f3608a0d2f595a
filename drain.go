package drainhttp

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Drain runs the server's graceful drain sequence and returns when no
// connection is left:
//
//  1. ReadyHandler starts failing, at once (PhaseNotReady).
//  2. For ShutdownDelay the server goes on serving normally, so that load
//     balancers notice and stop sending new traffic; with Adaptive, until
//     they have (see AdaptiveShutdown), at most ShutdownDelay.
//  3. The drain window runs for DrainTime (PhaseWindow), with the
//     listeners still accepting: HTTP/1.1 requests get Connection: close
//     as the Strategy says, each HTTP/2 connection open at the start gets
//     a two-phase GOAWAY at a random time in the first quarter of the
//     window (ProactiveFraction), and each idle HTTP/1.1 one is closed
//     there too once it has been idle longer than its client's rhythm.
//     Connections that arrive during the window are kept, and drained
//     like the others when it ends, or when they go quiet. With Adaptive,
//     the window ends early once no connection is open and none has
//     arrived for the quiet period.
//  4. Every connection is told to close, each with a deadline at most
//     DrainTimeout away, and the listeners close (PhaseClosingListeners):
//     on Linux without resetting the connections in their accept queues,
//     which are accepted and served first (see SharedListener). Serve
//     returns http.ErrServerClosed. RegisterOnShutdown functions run.
//  5. The remaining connections end (PhaseClosingConns), each closed at its
//     deadline if it has not closed by itself; hijacked ones included.
//
// So Drain returns at the latest ShutdownDelay + DrainTime × (1 +
// DrainTimeJitter) + about 1 s (the listeners) + DrainTimeout after it
// started, whatever the connections and policies do. If ctx ends first,
// Drain closes every connection at once and returns ctx.Err(). Calling
// Drain again, or while it runs, waits for the same sequence. Envoy: the
// drain sequence after /drain_listeners?graceful or a hot restart, plus
// kube-apiserver's shutdown delay.
func (s *Server) Drain(ctx context.Context) error {
	return s.drain(ctx, false)
}

// DrainAfterHandoff is Drain for a process whose listening sockets another
// process has taken over, in a hot restart: the listeners close first,
// without a filter (the new process accepts from them from now on), there
// is no shutdown delay, and then the existing connections are drained
// exactly as by Drain: the drain window with its decisions and proactive
// drain, then the per-connection deadlines. Give ctx the parent shutdown
// time as its deadline: when it ends, every connection left is closed.
// Once no connection is left the drain ends, without waiting for the rest
// of the window: none can arrive. ReadyHandler goes on answering 200, with
// Connection: close, since the address is still served, by the new
// process. Envoy: the parent's side of a hot restart (drainListeners, then
// startParentShutdownSequence's --parent-shutdown-time-s timer);
// drainhttp/restart does all of it.
func (s *Server) DrainAfterHandoff(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	s.handoff.Store(true)
	s.closeListeners()
	return s.drain(ctx, true)
}

// DrainNow is Drain with nothing spread out: no shutdown delay and an
// Immediate drain (Manager.DrainNow). Called while Drain runs, it cuts that
// drain short the same way; connections keep their DrainTimeout deadline.
// It is what a second SIGTERM means.
func (s *Server) DrainNow(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	s.hurryUp()
	return s.Drain(ctx)
}

// StartDrain starts Drain's sequence in the background, if it has not
// started, and returns once it has: readiness has failed, and without a
// shutdown delay the window is running. Follow it with Status, OnPhase or
// Done. An admin endpoint's "drain" is this.
func (s *Server) StartDrain() error {
	if err := s.init(); err != nil {
		return err
	}
	s.startDrain(false)
	return nil
}

// StartDrainNow is StartDrain for DrainNow: no shutdown delay, an Immediate
// drain, and a running drain cut short. When it returns, the window runs
// and every request is told to close.
func (s *Server) StartDrainNow() error {
	if err := s.init(); err != nil {
		return err
	}
	s.hurryUp()
	s.startDrain(false)
	<-s.windowStarted
	s.mgr.DrainNow(nil)
	return nil
}

func (s *Server) drain(ctx context.Context, handoff bool) error {
	if err := s.init(); err != nil {
		return err
	}
	s.startDrain(handoff)
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
	}
	s.cutShort.Store(true)
	s.hurryUp()
	s.closeListeners()
	s.tracker.closeAll("drain cut short")
	<-s.drained
	return ctx.Err()
}

// startDrain starts the drain sequence, once. Readiness has failed, and
// without a shutdown delay the window has started, when it returns.
func (s *Server) startDrain(handoff bool) {
	s.drainOnce.Do(func() {
		if s.adaptive != nil {
			s.adaptive.start() // before readiness fails: the probes that see it count
		}
		s.notReady.Store(true)
		s.drainStarted.Store(true)
		s.log.Info("drainhttp: drain started",
			"strategy", s.mgr.opts.Strategy.String(), "drain_time", s.mgr.opts.DrainTime.String(),
			"drain_timeout", s.tracker.drainTimeout.String(), "shutdown_delay", s.ShutdownDelay.String(),
			"adaptive", s.adaptive != nil, "handoff", handoff, "connections", s.tracker.openCount())
		complete := make(chan struct{})
		windowStarted := false
		switch {
		case handoff:
			s.startWindow(complete, "handoff")
			windowStarted = true
		case s.hurried():
			s.phases.enter(PhaseNotReady, "drain")
			s.startWindow(complete, "hurried")
			windowStarted = true
		case s.ShutdownDelay == 0:
			s.phases.enter(PhaseNotReady, "drain")
			s.startWindow(complete, "no_delay")
			windowStarted = true
		default:
			s.phases.enter(PhaseNotReady, "drain")
		}
		go s.runDrain(handoff, windowStarted, complete)
	})
}

func (s *Server) hurryUp() { s.hurryOnce.Do(func() { close(s.hurry) }) }

func (s *Server) hurried() bool {
	select {
	case <-s.hurry:
		return true
	default:
		return false
	}
}

// startWindow starts the Manager's drain sequence, then PhaseWindow:
// complete is closed when the sequence completes.
func (s *Server) startWindow(complete chan struct{}, cause string) {
	done := func() { close(complete) }
	if s.hurried() {
		s.mgr.DrainNow(done)
	} else {
		s.mgr.StartDrainSequence(done)
	}
	s.phases.enter(PhaseWindow, cause)
	close(s.windowStarted)
}

func (s *Server) runDrain(handoff, windowStarted bool, complete chan struct{}) {
	defer s.finish()
	defer close(s.drained)
	clock := s.tracker.clock
	start := clock.Now()

	if !windowStarted {
		s.startWindow(complete, s.shutdownDelay())
	}
	stopProgress := s.logProgress()
	var emptied <-chan struct{} // nil: never
	if handoff {
		// No connection can arrive after a handoff: once none is left,
		// the rest of the window has nothing to spread out.
		emptied = s.tracker.emptied()
	}
	var quiet <-chan struct{}
	windowOver := make(chan struct{})
	if s.adaptive != nil && !handoff {
		quiet = s.adaptive.windowQuiet(windowOver)
	}
	cause := "window_end"
	select {
	case <-complete:
	case <-s.hurry:
		cause = "hurried"
		s.mgr.DrainNow(nil)
	case <-emptied:
		cause = "empty"
		s.mgr.DrainNow(nil)
	case <-quiet:
		cause = "quiet"
		s.mgr.DrainNow(nil)
	}
	<-complete
	if cause == "window_end" && s.hurried() {
		cause = "hurried" // DrainNow completed the window at once
	}
	close(windowOver)
	stopProgress()

	s.tracker.drainAll()
	s.runOnShutdown()
	if handoff {
		s.phases.enter(PhaseClosingConns, cause)
	} else {
		s.phases.enter(PhaseClosingListeners, cause)
		ctx, cancel := context.WithTimeout(context.Background(), listenerCloseMax)
		s.closeListenersGracefully(ctx)
		cancel()
		s.phases.enter(PhaseClosingConns, "listeners_closed")
	}
	<-s.tracker.emptied()
	// Every connection is closed. Close (not Shutdown, which would wait
	// for handlers that ignore their context) puts the outer server in its
	// closed state.
	s.srv.Close()
	end := "no_connection_left"
	if s.cutShort.Load() {
		end = "canceled"
	}
	s.phases.enter(PhaseDrained, end)

	st := s.tracker.stats()
	s.log.Info("drainhttp: drain complete", "duration", clock.Now().Sub(start).Round(time.Millisecond).String(),
		drainedGroup(st), "forced", st.Forced, "goaways", st.GoAways)
}

// shutdownDelay waits out the shutdown delay and says what ended it.
func (s *Server) shutdownDelay() string {
	if s.adaptive != nil {
		return s.adaptive.waitRelease(s.ShutdownDelay, s.hurry)
	}
	delay := make(chan struct{})
	t := s.tracker.clock.AfterFunc(s.ShutdownDelay, func() { close(delay) })
	select {
	case <-delay:
		return "delay"
	case <-s.hurry:
		t.Stop()
		return "hurried"
	}
}

// drainedGroup is Stats.Drained as a log group, one attribute per reason.
func drainedGroup(st Stats) slog.Attr {
	args := make([]any, 0, 2*numReasons)
	for r := range drainReason(numReasons) {
		args = append(args, r.String(), st.Drained[r.String()])
	}
	return slog.Group("drained", args...)
}

// progressLogInterval is how often a running drain logs its progress: often
// enough to watch a drain of half a minute, rarely enough to keep a
// ten-minute one to a screenful.
const progressLogInterval = 5 * time.Second

// logProgress logs the drain's progress every progressLogInterval until the
// returned function is called; no line is logged after it returns.
func (s *Server) logProgress() (stop func()) {
	var mu sync.Mutex
	stopped := false
	var timer Timer
	var tick func()
	tick = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		st, stats := s.mgr.Status(), s.tracker.stats()
		s.log.Info("drainhttp: draining", "progress", st.Progress,
			"time_left", max(st.Deadline.Sub(s.tracker.clock.Now()), 0).Round(time.Millisecond).String(),
			"connections", stats.OpenTotal, drainedGroup(stats), "forced", stats.Forced)
		timer = s.tracker.clock.AfterFunc(progressLogInterval, tick)
	}
	mu.Lock()
	timer = s.tracker.clock.AfterFunc(progressLogInterval, tick)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}
