package drainhttp

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// trackedConn is a connection accepted by a tracked listener: the net.Conn
// that net/http serves, and what the server knows of it. It stays small
// while no drain reaches it: the drain record (connDrain) is allocated
// then.
type trackedConn struct {
	net.Conn
	t        *tracker
	policy   *ConnPolicy
	accepted int64 // clock time, Unix nanoseconds

	requests atomic.Int64
	proto    atomic.Uint32 // Protocol
	state    atomic.Int32  // http.ConnState
	drain    atomic.Uint32 // ConnDrainState
	active   atomic.Int32  // StateActive transitions; HTTP/2's first is the preface

	mu        sync.Mutex // guards the fields below and the open counts' updates
	late      bool       // accepted during a drain: drained when idle
	closed    bool
	idleSince int64         // clock time, Unix nanoseconds
	ageTimer  Timer         // MaxConnectionAge
	goaway    func()        // HTTP/2 only: GOAWAY on this connection
	notify    chan struct{} // closed when marked; nil until asked for
	d         *connDrain    // nil until a drain reaches the connection
}

// connDrain is a connection's drain record.
type connDrain struct {
	marked      bool // drain state left ConnNotDraining
	forced      bool
	reason      DrainReason
	markedAt    time.Time
	deadline    Timer // force-closes the connection
	idleCheck   Timer
	goAwayTimer Timer // HTTP/2: a GOAWAY waiting for h2MinAge
	proactive   Timer // the connection's turn in the proactive window
	proactiveAt time.Time
}

// record returns c's drain record, making it. c.mu is held.
func (c *trackedConn) record() *connDrain {
	if c.d == nil {
		c.d = new(connDrain)
	}
	return c.d
}

// marked reports whether c has been told to close. c.mu is held.
func (c *trackedConn) marked() bool { return c.d != nil && c.d.marked }

// age returns how old c is at now.
func (c *trackedConn) age(now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - c.accepted)
}

// onRequest applies the drain decision and the connection's policies to a
// request on c, and makes the response end c if one of them says so. While
// nothing fires it is a few atomic operations and no allocation.
func (c *trackedConn) onRequest(d Decision, w http.ResponseWriter, r *http.Request) {
	n := c.requests.Add(1)
	if ConnDrainState(c.drain.Load()) != ConnNotDraining {
		c.closeAfter(w, r)
		return
	}
	p := c.policy
	var reason DrainReason
	switch {
	case d.DrainClose():
		reason = ReasonDecision
	case p.MaxRequestsPerConnection > 0 && n >= p.MaxRequestsPerConnection:
		reason = ReasonMaxRequests
	case p.GoAwayChance > 0 && (p.GoAwayChanceHTTP1 || c.protocol() != HTTP1) && c.t.rand() < p.GoAwayChance:
		// Rate limited like the other proactive ends: if the limiter
		// allows it only later, the connection is ended then.
		if d := c.t.reserveEnd(); d > 0 {
			c.t.clock.AfterFunc(d, func() { c.end(ReasonGoAwayChance) })
			return
		}
		reason = ReasonGoAwayChance
	default:
		return
	}
	c.markDraining(reason)
	c.closeAfter(w, r)
}

func (c *trackedConn) protocol() Protocol { return Protocol(c.proto.Load()) }

func (c *trackedConn) setState(state http.ConnState) {
	if state == http.StateClosed {
		c.finish()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := http.ConnState(c.state.Load())
	if old == state || c.closed {
		return
	}
	p := c.protocol()
	c.t.open[p][old].Add(-1)
	c.t.open[p][state].Add(1)
	c.state.Store(int32(state))
	switch state {
	case http.StateActive:
		c.active.Add(1)
	case http.StateIdle:
		c.idleSince = c.t.clock.Now().UnixNano()
		switch {
		case c.marked() && p == HTTP1:
			c.armIdleCheck(idleCloseDelay, c.closeIdle)
		case c.late && !c.marked():
			c.armIdleCheck(idleCloseDelay, func() { c.t.endLimited(c, ReasonProactive) })
		}
	}
}

// setHTTP2 records that c is now served by the HTTP/2 server, and how to
// send it a GOAWAY.
func (c *trackedConn) setHTTP2(p Protocol, goaway func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	old := c.protocol()
	s := c.state.Load()
	c.proto.Store(uint32(p))
	c.t.open[old][s].Add(-1)
	c.t.open[p][s].Add(1)
	c.goaway = goaway
	marked := c.marked()
	c.mu.Unlock()
	if marked && c.h2Armed() {
		c.goAwayWhenOld()
	}
}

// h2Armed reports whether an out-of-band GOAWAY is safe: a GOAWAY before
// the connection's first request makes Go's client fail that request, so we
// wait for the first stream (the second StateActive: the first comes from
// the preface).
func (c *trackedConn) h2Armed() bool { return c.active.Load() >= 2 }

// goAwayWhenOld sends c its GOAWAY once c is h2MinAge old: now, or on a
// timer.
func (c *trackedConn) goAwayWhenOld() {
	wait := c.t.h2MinAge - c.age(c.t.clock.Now())
	if wait <= 0 {
		c.sendGoAway()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.record(); d.goAwayTimer == nil && !c.closed {
		d.goAwayTimer = c.t.clock.AfterFunc(wait, c.sendGoAway)
	}
}

func (c *trackedConn) sendGoAway() {
	if goaway := c.takeGoAway(); goaway != nil {
		goaway()
	}
}

// takeGoAway counts c's GOAWAY and returns the function that sends it, or
// nil if c had it already: Go's GOAWAY is single-phase, and a second drain of
// the same connection only delays the client's retries.
func (c *trackedConn) takeGoAway() func() {
	c.mu.Lock()
	goaway := c.goaway
	c.goaway = nil
	c.mu.Unlock()
	if goaway != nil {
		c.t.goaways.Add(1)
	}
	return goaway
}

// scheduleProactive gives c its turn in the proactive window of the drain
// sequence s: at a uniformly random time in what is left of the window,
// unless c already has an earlier turn. A connection accepted during the
// drain has none (see tracker.add).
func (c *trackedConn) scheduleProactive(s *sequence) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.late {
		return
	}
	now := c.t.clock.Now()
	delay := s.proactiveDelay(now, c.t.rand)
	at := now.Add(delay)
	d := c.record()
	if d.proactive != nil && (!at.Before(d.proactiveAt) || !d.proactive.Stop()) {
		return
	}
	d.proactiveAt = at
	d.proactive = c.t.clock.AfterFunc(delay, func() { c.t.endLimited(c, ReasonProactive) })
}

// markDraining moves c from ConnNotDraining to ConnDraining and starts its
// drain deadline. It reports whether it did so.
func (c *trackedConn) markDraining(reason DrainReason) bool {
	if !c.drain.CompareAndSwap(uint32(ConnNotDraining), uint32(ConnDraining)) {
		return false
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	d := c.record()
	d.marked = true
	d.reason = reason
	d.markedAt = c.t.clock.Now()
	timeout := c.t.drainTimeout
	if reason == ReasonMaxAge {
		timeout = c.policy.MaxConnectionAgeGrace
	}
	d.deadline = c.t.clock.AfterFunc(timeout, func() { c.forceClose("drain deadline") })
	if c.notify != nil {
		close(c.notify)
	} else {
		c.notify = closedChan
	}
	c.mu.Unlock()
	c.t.log.Debug("drainhttp: connection draining", "remote", c.RemoteAddr().String(), "protocol", c.protocol().String(), "reason", reason.String())
	return true
}

// end drains c for reason, even if it never sends another request: it is
// marked draining, an idle HTTP/1.1 connection is closed (once it has been
// idle for idleCloseDelay), an HTTP/2 connection that has served a request
// is sent a GOAWAY.
func (c *trackedConn) end(reason DrainReason) {
	if !c.markDraining(reason) && ConnDrainState(c.drain.Load()) != ConnDraining {
		return // closing or closed
	}
	switch c.protocol() {
	case HTTP1:
		c.mu.Lock()
		if http.ConnState(c.state.Load()) == http.StateIdle && !c.closed {
			idle := time.Duration(c.t.clock.Now().UnixNano() - c.idleSince)
			c.armIdleCheck(idleCloseDelay-idle, c.closeIdle)
		}
		c.mu.Unlock()
	default:
		if c.h2Armed() {
			c.goAwayWhenOld()
		}
	}
}

// armIdleCheck runs then after d if c has stayed idle all along. c.mu is
// held.
func (c *trackedConn) armIdleCheck(wait time.Duration, then func()) {
	d := c.record()
	if d.idleCheck != nil {
		d.idleCheck.Stop()
	}
	since := c.idleSince
	d.idleCheck = c.t.clock.AfterFunc(max(wait, 0), func() {
		c.mu.Lock()
		idle := http.ConnState(c.state.Load()) == http.StateIdle && c.idleSince == since && !c.closed
		c.mu.Unlock()
		if idle {
			then()
		}
	})
}

// closeIdle closes a draining connection that is idle.
func (c *trackedConn) closeIdle() {
	if c.drain.CompareAndSwap(uint32(ConnDraining), uint32(ConnClosing)) {
		c.Close()
	}
}

// forceClose closes c now, whatever it is doing: at its drain deadline, or
// when a drain is cut short. Closing the socket under TLS means a writer
// stuck on a slow peer cannot block it.
func (c *trackedConn) forceClose(why string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	now := c.t.clock.Now()
	d := c.record()
	// Closing an idle connection (an HTTP/2 one waiting out its GOAWAY, one
	// that never sent a request) interrupts nothing: only a busy one is
	// forced.
	state := http.ConnState(c.state.Load())
	d.forced = state == http.StateActive || state == http.StateHijacked
	if !d.marked {
		// Ended by a drain cut short or by Close before its turn came.
		d.marked, d.reason, d.markedAt = true, ReasonProactive, now
	}
	forced := d.forced
	c.mu.Unlock()
	c.drain.Store(uint32(ConnClosing))
	level, msg := slog.LevelDebug, "drainhttp: idle connection closed"
	if forced {
		level, msg = slog.LevelWarn, "drainhttp: connection force-closed"
	}
	c.t.log.Log(context.Background(), level, msg, "why", why,
		"remote", c.RemoteAddr().String(), "protocol", c.protocol().String(),
		"state", state.String(), "age", c.age(now).String())
	c.Close()
}

// Close closes the connection and forgets it.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.finish()
	return err
}

// finish forgets a closed connection, once.
func (c *trackedConn) finish() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.ageTimer != nil {
		c.ageTimer.Stop()
	}
	t := c.t
	t.open[c.protocol()][c.state.Swap(int32(http.StateClosed))].Add(-1)
	c.goaway = nil
	var d connDrain
	if c.d != nil {
		d = *c.d
		for _, timer := range []Timer{d.deadline, d.idleCheck, d.goAwayTimer, d.proactive} {
			if timer != nil {
				timer.Stop()
			}
		}
	}
	c.mu.Unlock()
	// Count before forgetting, so that a drain that waits for the last
	// connection sees its counters final.
	if d.marked {
		t.drained[d.reason].Add(1)
		if d.forced {
			t.forced.Add(1)
		}
		t.mu.Lock()
		onDone := t.onDone
		t.mu.Unlock()
		if onDone != nil {
			onDone(c, t.clock.Now().Sub(d.markedAt))
		}
	}
	t.forget(c)
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// drainingChan returns a channel closed when c starts draining.
func (c *trackedConn) drainingChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notify == nil {
		c.notify = make(chan struct{})
	}
	return c.notify
}

// ReadFrom keeps net/http's sendfile path: *net.TCPConn implements
// io.ReaderFrom.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// CloseWrite keeps net/http's graceful half-close of TCP connections.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the accepted connection under c, like tls.Conn.NetConn.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }
