package drainhttp

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// conn is what the server knows of one connection. net/http serves the
// connection itself, exactly as the listener returned it; the tracker finds
// this record from the net.Conn that net/http's hooks pass. It stays small
// until a drain or a policy reaches it: the drain record (connDrain) is
// allocated then.
type conn struct {
	// Context is the connection's context, from BaseContext and the
	// user's ConnContext: the record is the context net/http gives the
	// connection's requests, and Value(connKey{}) returns it, which saves
	// a context.WithValue per connection.
	context.Context
	t        *tracker
	nc       net.Conn // as the listener returned it
	policy   *ConnPolicy
	accepted int64       // clock time, Unix nanoseconds
	late     bool        // accepted while the server drained: kept until the window ends
	probe    atomic.Bool // its first request was a readiness probe (Adaptive)

	requests atomic.Int64  // counted only where a policy or Adaptive needs it
	proto    atomic.Uint32 // connProtocol
	state    atomic.Int32  // http.ConnState
	drain    atomic.Uint32 // connDrainState

	mu        sync.Mutex // guards the fields below and the open counts' updates
	alias     net.Conn   // the *tls.Conn that ServeTLS made over nc, once seen
	actives   int32      // StateActive transitions; HTTP/2's first comes from the preface
	idleSince int64      // monoNow of the last StateIdle; 0 before the first
	rhythm    rhythm
	ageTimer  Timer         // MaxConnectionAge
	h2        *h2Conn       // HTTP/2 only
	notify    chan struct{} // closed when told; nil until asked for
	d         *connDrain    // nil until told or given a turn
}

// connDrain is a connection's drain record.
type connDrain struct {
	reason     drainReason
	toldAt     time.Time
	deadline   Timer     // closes the connection whatever it does; nil if none
	deadlineAt time.Time // zero if none
	forced     bool
	idleClose  Timer // HTTP/1.1: closes it once it has been idle long enough
	idleClosed bool  // idleClose closed it: its client had stopped using it
	end        Timer // its turn in the proactive window, or a rate-limited end: one at a time
	endAt      time.Time
	endReason  drainReason
}

// record returns c's drain record, making it. c.mu is held.
func (c *conn) record() *connDrain {
	if c.d == nil {
		c.d = new(connDrain)
	}
	return c.d
}

func (c *conn) protocol() connProtocol { return connProtocol(c.proto.Load()) }

func (c *conn) drainState() connDrainState { return connDrainState(c.drain.Load()) }

// age returns how old c is at now.
func (c *conn) age(now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - c.accepted)
}

// tell tells c to close for reason: its next HTTP/1.1 response carries
// Connection: close, Draining(ctx) is closed and, if withDeadline, its
// deadline starts: DrainTimeout (MaxConnectionAgeGrace for max_age) from
// now, or sooner if it had one already. It reports whether c was open.
// It does not act on an idle connection: end does.
func (c *conn) tell(reason drainReason, withDeadline bool) bool {
	now := c.t.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.drainState() {
	case notDraining:
		d := c.record()
		d.reason, d.toldAt = reason, now
		c.drain.Store(uint32(told))
		if c.notify != nil {
			close(c.notify)
		} else {
			c.notify = closedChan
		}
		c.t.log.Debug("drainhttp: connection told to close", "remote", c.remote(), "protocol", c.protocol().String(), "reason", reason.String())
	case told:
	default:
		return false
	}
	if withDeadline {
		timeout := c.t.drainTimeout
		if reason == reasonMaxAge {
			timeout = c.policy.MaxConnectionAgeGrace
		}
		c.boundLocked(now.Add(timeout))
	}
	return true
}

// bound makes c's deadline at the latest at, if it is still open: a drain
// that reaches a connection shortens whatever deadline it had.
func (c *conn) bound(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.drainState(); s == told {
		c.boundLocked(at)
	}
}

func (c *conn) boundLocked(at time.Time) {
	d := c.record()
	if d.deadline != nil && !at.Before(d.deadlineAt) {
		return
	}
	if d.deadline != nil {
		d.deadline.Stop()
	}
	d.deadlineAt = at
	d.deadline = c.t.clock.AfterFunc(at.Sub(c.t.clock.Now()), func() { c.closeNow("drain deadline") })
}

// end tells c to close for reason, with a deadline, and acts on it even if
// it never sends another request: an idle HTTP/1.1 connection is closed
// once it has been idle longer than its client's rhythm, an HTTP/2
// connection is sent its GOAWAY.
func (c *conn) end(reason drainReason) {
	if !c.tell(reason, true) {
		return
	}
	c.act()
}

// act makes a told connection end.
func (c *conn) act() {
	switch c.protocol() {
	case protoHTTP1:
		c.mu.Lock()
		c.armIdleCloseLocked()
		c.mu.Unlock()
	default:
		c.mu.Lock()
		h2 := c.h2
		c.mu.Unlock()
		if h2 != nil {
			h2.goAway()
		}
	}
}

// armIdleCloseLocked schedules the close of an idle HTTP/1.1 connection
// that is told to close, or that arrived during a drain: once it has been
// idle for its rhythm's quietAfter, counted from when it went idle. c.mu is
// held.
func (c *conn) armIdleCloseLocked() {
	if http.ConnState(c.state.Load()) != http.StateIdle {
		return
	}
	s := c.drainState()
	if s != told && !(s == notDraining && c.late) {
		return
	}
	d := c.record()
	if d.idleClose != nil {
		d.idleClose.Stop()
	}
	since := c.idleSince
	wait := time.Duration(since + int64(c.rhythm.quietAfter()) - c.t.monoNow())
	d.idleClose = c.t.clock.AfterFunc(max(wait, 0), func() { c.closeIdle(since) })
}

// closeIdle closes c if it has stayed idle since since, and no request has
// begun to arrive: closing then would lose that request. net/http reports a
// connection active only once it has read a whole request header, so a
// request can be waiting in the socket (on a busy machine the serving
// goroutine takes a while to wake for it) or be half read (its header came
// in pieces); the socket tells both apart from an idle connection.
func (c *conn) closeIdle(since int64) {
	c.mu.Lock()
	idle := http.ConnState(c.state.Load()) == http.StateIdle && c.idleSince == since
	if !idle {
		c.mu.Unlock()
		return
	}
	idleFor := time.Duration(c.t.monoNow() - since)
	if inputPending(c.nc) || receivedWithin(c.nc, idleFor-receiveClockSlack) {
		c.mu.Unlock()
		// It goes active, and idle again, which rearms the close; one that
		// never does ends at its deadline.
		c.t.log.Debug("drainhttp: idle close put off: a request is arriving", "remote", c.remote())
		return
	}
	if c.drainState() == notDraining {
		// A late connection gone quiet: it is drained proactively.
		c.mu.Unlock()
		if !c.tell(reasonProactive, true) {
			return
		}
		c.mu.Lock()
	}
	ok := c.drain.CompareAndSwap(uint32(told), uint32(closing))
	if ok {
		c.d.idleClosed = true
	}
	c.mu.Unlock()
	if ok {
		c.t.log.Debug("drainhttp: idle connection closed", "remote", c.remote(), "idle", time.Duration(c.t.monoNow()-since).String())
		c.nc.Close()
	}
}

// receiveClockSlack covers the coarseness of the kernel's clock for
// tcpi_last_data_recv (a jiffy, up to 10 ms), so that the last bytes of the
// request before the idle time do not count as a new one.
const receiveClockSlack = 20 * time.Millisecond

// closeNow closes c at once, whatever it is doing: at its deadline, when a
// drain is cut short, or on Close; why says which, for the log. A
// connection that was never told to close is counted with reason "close".
// An HTTP/2 connection waiting out its GOAWAY or one that never sent a
// request is idle, and not counted as forced; a busy or hijacked one is.
// Closing the socket under TLS means a writer stuck on a slow peer cannot
// block it.
func (c *conn) closeNow(why string) {
	now := c.t.clock.Now()
	c.mu.Lock()
	switch c.drainState() {
	case closed:
		c.mu.Unlock()
		return
	case notDraining:
		// Ended by Close, or by a drain cut short, before its turn came.
		d := c.record()
		d.reason, d.toldAt = reasonClose, now
		if c.notify != nil {
			close(c.notify)
		} else {
			c.notify = closedChan
		}
	}
	c.drain.Store(uint32(closing))
	d := c.record()
	state := http.ConnState(c.state.Load())
	d.forced = state == http.StateActive || state == http.StateHijacked
	c.mu.Unlock()
	level, msg := slog.LevelDebug, "drainhttp: idle connection closed"
	if d.forced {
		level, msg = slog.LevelWarn, "drainhttp: connection force-closed"
	}
	c.t.log.Log(context.Background(), level, msg, "why", why,
		"remote", c.remote(), "protocol", c.protocol().String(),
		"state", state.String(), "age", c.age(now).String())
	rawConn(c.nc).Close()
	if state == http.StateHijacked {
		// net/http no longer watches it: nobody else reports its end.
		c.forget()
	}
}

// rawConn returns the socket under nc: a *tls.Conn's NetConn, or nc.
func rawConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return nc
}

// wasIdleClosed reports whether closeIdle closed c.
func (c *conn) wasIdleClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.d != nil && c.d.idleClosed
}

// forget records that c is gone, once: its timers stop, its drain is
// counted and the tracker lets it go.
func (c *conn) forget() {
	c.mu.Lock()
	if c.drainState() == closed {
		c.mu.Unlock()
		return
	}
	c.drain.Store(uint32(closed))
	if c.ageTimer != nil {
		c.ageTimer.Stop()
	}
	t := c.t
	state := http.ConnState(c.state.Swap(int32(http.StateClosed)))
	d := c.d
	if d != nil {
		for _, timer := range []Timer{d.deadline, d.idleClose, d.end} {
			if timer != nil {
				timer.Stop()
			}
		}
	}
	h2 := c.h2
	if c.notify == nil {
		c.notify = closedChan
	} else if d == nil || d.toldAt.IsZero() {
		close(c.notify) // never told: Draining ends with the connection
	}
	c.mu.Unlock()
	if h2 != nil {
		h2.stop()
	}
	if d != nil && !d.toldAt.IsZero() {
		// Count before forgetting, so that a drain that waits for the
		// last connection sees its counters final.
		t.drained[d.reason].Add(1)
		if d.forced {
			t.forced.Add(1)
		}
		t.observeDrained(DrainedConn{
			Reason:   d.reason.String(),
			Protocol: c.protocol().String(),
			Forced:   d.forced,
			Draining: t.clock.Now().Sub(d.toldAt),
		})
	}
	t.remove(c, state == http.StateHijacked)
	if t.onClose != nil {
		t.onClose(c)
	}
}

// scheduleEnd ends c for reason at at (see endSoon), unless it has an
// earlier end pending: a connection has one pending end at a time, and it
// is cancelled when the connection closes.
func (c *conn) scheduleEnd(at time.Time, reason drainReason) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drainState() != notDraining {
		return
	}
	d := c.record()
	if d.end != nil && (!at.Before(d.endAt) || !d.end.Stop()) {
		return
	}
	c.setEndLocked(at, reason, c.endSoon)
}

// setEndLocked makes c's pending end at at: then, then(reason) runs. c.mu
// is held.
func (c *conn) setEndLocked(at time.Time, reason drainReason, then func(drainReason) bool) {
	d := c.record()
	d.endAt, d.endReason = at, reason
	d.end = c.t.clock.AfterFunc(at.Sub(c.t.clock.Now()), func() {
		c.mu.Lock()
		c.d.end = nil
		c.mu.Unlock()
		then(reason)
	})
}

// endSoon ends c for reason (see end) as soon as the server's rate limit on
// proactive ends allows, and reports whether that was now. Otherwise c's
// end is pending, at the time the limiter gave; if it had one pending
// already, that one stands and no rate is spent.
func (c *conn) endSoon(reason drainReason) bool {
	if lim := c.t.limiter; lim != nil {
		c.mu.Lock()
		if c.drainState() != notDraining || (c.d != nil && c.d.end != nil) {
			c.mu.Unlock()
			return false
		}
		now := c.t.clock.Now()
		if wait := lim.ReserveN(now, 1).DelayFrom(now); wait > 0 {
			// The token is booked for then: the end needs no other.
			c.setEndLocked(now.Add(wait), reason, func(r drainReason) bool { c.end(r); return true })
			c.mu.Unlock()
			return false
		}
		c.mu.Unlock()
	}
	c.end(reason)
	return true
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// drainingChan returns a channel closed when c is told to close.
func (c *conn) drainingChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notify == nil {
		c.notify = make(chan struct{})
	}
	return c.notify
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}
