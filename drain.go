package drainhttp

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Drain runs the server's graceful drain sequence and returns when no
// connection is left:
//
//  1. ReadyHandler starts failing, at once.
//  2. For ShutdownDelay the server goes on serving normally, so that load
//     balancers notice and stop sending new traffic.
//  3. The Manager's drain sequence runs for DrainTime, with the listeners
//     still accepting (connections accepted now are drained too): requests
//     get Connection: close (HTTP/1.1) or GOAWAY (HTTP/2) as the Strategy
//     says, and every connection's proactive drain runs within the first
//     quarter of the window, closing idle HTTP/1.1 connections and sending
//     GOAWAY to idle HTTP/2 ones.
//  4. The listeners close: Serve returns http.ErrServerClosed.
//  5. Every connection still open is drained now, and each draining
//     connection is closed at its deadline (DrainTimeout after it was told
//     to close) if it has not closed by itself.
//
// If ctx ends first, Drain closes every connection at once and returns
// ctx.Err(). Calling Drain again, or while it runs, waits for the same
// sequence. Envoy: the drain sequence after /drain_listeners?graceful or a
// hot restart, plus kube-apiserver's shutdown delay.
func (s *Server) Drain(ctx context.Context) error {
	return s.drain(ctx, false)
}

// DrainAfterHandoff is Drain for a process whose listening sockets another
// process has taken over, in a hot restart: the listeners close first (the
// new process accepts from now on), there is no ShutdownDelay, and then the
// existing connections are drained exactly as by Drain: the drain window
// with its decisions and proactive drain, then the per-connection
// deadlines. Give ctx the parent shutdown time as its deadline: when it
// ends, every connection left is closed. Once no connection is left the
// drain ends, without waiting for the rest of the window: none can arrive.
// ReadyHandler goes on answering 200, with Connection: close, since the
// address is still served, by the new process. Envoy: the parent's side of
// a hot restart (drainListeners, then startParentShutdownSequence's
// --parent-shutdown-time-s timer); Restarter does all of it.
func (s *Server) DrainAfterHandoff(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	s.handoff.Store(true)
	s.closeListeners()
	return s.drain(ctx, true)
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
	s.hurryUp()
	s.closeListeners()
	s.tracker.closeAll("drain cut short")
	<-s.drained
	return ctx.Err()
}

// DrainNow is Drain with nothing spread out: no ShutdownDelay and an
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

// startDrain starts the drain sequence in the background, once: readiness
// fails before it returns.
func (s *Server) startDrain(handoff bool) {
	s.drainOnce.Do(func() {
		s.notReady.Store(true)
		s.drainStarted.Store(true)
		go s.runDrain(handoff)
	})
}

func (s *Server) hurryUp() { s.hurryOnce.Do(func() { close(s.hurry) }) }

func (s *Server) runDrain(handoff bool) {
	defer close(s.drained)
	clock := s.tracker.clock
	start := clock.Now()
	s.log.Info("drainhttp: drain started",
		"strategy", s.mgr.opts.Strategy.String(), "drain_time", s.mgr.opts.DrainTime.String(),
		"drain_timeout", s.tracker.drainTimeout.String(), "shutdown_delay", s.ShutdownDelay.String(),
		"handoff", handoff, "connections", s.tracker.openCount())

	if s.ShutdownDelay > 0 && !handoff {
		delay := make(chan struct{})
		t := clock.AfterFunc(s.ShutdownDelay, func() { close(delay) })
		select {
		case <-delay:
		case <-s.hurry:
			t.Stop()
		}
	}

	stopProgress := s.logProgress()
	defer stopProgress()
	complete := make(chan struct{})
	select {
	case <-s.hurry:
		s.mgr.DrainNow(func() { close(complete) })
	default:
		s.mgr.StartDrainSequence(func() { close(complete) })
		var emptied <-chan struct{} // nil: never
		if handoff {
			// No connection can arrive after a handoff: once none is
			// left, the rest of the window has nothing to spread out.
			emptied = s.tracker.emptied()
		}
		select {
		case <-complete:
		case <-s.hurry:
			s.mgr.DrainNow(nil)
		case <-emptied:
			s.mgr.DrainNow(nil)
		}
	}
	<-complete

	s.closeListeners()
	s.runOnShutdown()
	s.tracker.drainAll()
	s.tracker.waitEmpty(context.Background())
	// Every connection is closed. Close (not Shutdown, which would wait for
	// handlers that ignore their context) puts the inner server in its
	// closed state.
	s.srv.Close()

	t := s.tracker
	s.log.Info("drainhttp: drain complete", "duration", clock.Now().Sub(start).String(),
		"drained_by_decision", t.drained[ReasonDecision].Load(),
		"drained_proactively", t.drained[ReasonProactive].Load(),
		"forced", t.forced.Load())
}

// progressLogInterval is how often a running drain logs its progress: often
// enough to watch a drain of half a minute, rarely enough to keep a
// ten-minute one to a screenful.
const progressLogInterval = 5 * time.Second

// logProgress logs the drain's progress every progressLogInterval until the
// returned function is called.
func (s *Server) logProgress() (stop func()) {
	var mu sync.Mutex
	stopped := false
	var timer Timer
	var tick func()
	tick = func() {
		st, stats := s.mgr.Status(), s.tracker.stats()
		s.log.Info("drainhttp: draining", "progress", st.Progress,
			"time_left", max(st.Deadline.Sub(s.tracker.clock.Now()), 0).Round(time.Millisecond).String(),
			"connections", stats.OpenTotal, "drained", stats.Drained, "forced", stats.Forced)
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer = s.tracker.clock.AfterFunc(progressLogInterval, tick)
		}
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

// ReadyHandler returns an http.Handler for readiness probes and load
// balancer health checks: 200 "ok" while the server takes new traffic, 503
// "draining" once Drain, Shutdown or Close started or while the Manager's
// health check is failed. Envoy: the health check filter answering 503
// after /healthcheck/fail. Mount it where probes reach it; on the serving
// mux it passes through the drain middleware like any request.
func (s *Server) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.init(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if s.handoff.Load() {
			// The new process serves this address now: a health checker
			// that reached the old one on a kept-alive connection must not
			// mark the address down, only move to the new process.
			w.Header().Set("Connection", "close")
			w.Write([]byte("ok\n"))
			return
		}
		if !s.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
}

// Ready reports whether the server takes new traffic: see ReadyHandler.
func (s *Server) Ready() bool {
	return s.init() == nil && !s.notReady.Load() && s.mgr.Ready()
}
