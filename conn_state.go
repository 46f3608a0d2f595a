package drainhttp

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Protocol is the application protocol of a connection.
type Protocol uint8

const (
	// HTTP1 is HTTP/1.x, over TLS or not. Every connection starts as HTTP1
	// until it is handed to the HTTP/2 server.
	HTTP1 Protocol = iota
	// H2 is HTTP/2 over TLS, negotiated with ALPN.
	H2
	// H2C is HTTP/2 over cleartext TCP with prior knowledge.
	H2C

	numProtocols = 3
)

var protocolName = [numProtocols]string{"http/1.1", "h2", "h2c"}

// String returns "http/1.1", "h2" or "h2c".
func (p Protocol) String() string {
	if int(p) < len(protocolName) {
		return protocolName[p]
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// ConnDrainState is where a connection is in its own drain, Envoy's
// per-connection drain state in the HTTP connection manager.
type ConnDrainState uint8

const (
	// ConnNotDraining is the initial state. A connection leaves it for
	// ConnDraining when the drain decision fires on one of its requests or
	// its proactive drain callback runs.
	ConnNotDraining ConnDrainState = iota
	// ConnDraining: the connection has been told to end (its next response
	// carries Connection: close, or it was sent a GOAWAY) and its drain
	// deadline runs. It goes to ConnClosing when the server closes it.
	ConnDraining
	// ConnClosing: the server is closing the connection, because it was
	// idle or because its drain deadline passed. This is a terminal state.
	ConnClosing
)

var connDrainStateName = map[ConnDrainState]string{
	ConnNotDraining: "not_draining",
	ConnDraining:    "draining",
	ConnClosing:     "closing",
}

// String returns "not_draining", "draining" or "closing".
func (s ConnDrainState) String() string { return connDrainStateName[s] }

// DrainReason says why a connection was drained.
type DrainReason uint8

const (
	// ReasonDecision: the drain decision answered true for one of its
	// requests (Envoy: downstream_cx_drain_close).
	ReasonDecision DrainReason = iota
	// ReasonProactive: its proactive drain callback ran, or the drain
	// sequence completed while it was still open.
	ReasonProactive
	// ReasonMaxAge: it reached ConnPolicy.MaxConnectionAge (Envoy:
	// downstream_cx_max_duration_reached).
	ReasonMaxAge
	// ReasonMaxRequests: it served ConnPolicy.MaxRequestsPerConnection
	// requests (Envoy: downstream_cx_max_requests_reached).
	ReasonMaxRequests
	// ReasonGoAwayChance: ConnPolicy.GoAwayChance picked it.
	ReasonGoAwayChance

	numReasons = 5
)

var reasonName = [numReasons]string{"decision", "proactive", "max_age", "max_requests", "goaway_chance"}

// String returns the reason's metric label: "decision", "proactive",
// "max_age", "max_requests" or "goaway_chance".
func (r DrainReason) String() string {
	if int(r) < len(reasonName) {
		return reasonName[r]
	}
	return fmt.Sprintf("DrainReason(%d)", uint8(r))
}

// numConnStates counts http.ConnState values: new, active, idle, hijacked,
// closed.
const numConnStates = 5

// idleCloseDelay is how long an HTTP/1.1 connection must have been idle
// before a proactive drain closes it. Closing an idle keep-alive connection
// races with a request the client may be sending on it at that moment; Go's
// client retries idempotent requests, but a POST would fail. A client that
// reuses its connections in a loop sends again well within this delay, and
// so gets Connection: close on a response instead of a closed socket.
const idleCloseDelay = 250 * time.Millisecond

// h2MinAge is the youngest an HTTP/2 connection may be when it is sent a
// GOAWAY; a younger one is sent it when it reaches that age. A client sends
// the requests it queued while connecting in a burst on a fresh connection:
// a GOAWAY in its first moments refuses them all, and grpc-go retries a
// refused call only once, on a fresh connection that a draining server
// would refuse again. Found by the grpc-go drain test in examples/grpc.
const h2MinAge = 250 * time.Millisecond

// tracker follows every connection of a Server, from Accept to Close, through
// a listener wrapper (so hijacked connections stay tracked: net/http forgets
// them) and the ConnState hook.
type tracker struct {
	mgr          *Manager
	clock        Clock
	rand         func() float64
	drainTimeout time.Duration
	log          *slog.Logger
	userState    func(net.Conn, http.ConnState)
	policy       *ConnPolicy   // for listeners without their own
	limiter      *rate.Limiter // nil: proactive ends are not rate limited
	h2MinAge     time.Duration // h2MinAge; tests may set zero

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	final  bool          // the drain completed: new connections drain at once
	empty  chan struct{} // closed when conns becomes empty; nil if nobody waits
	onDone func(c *trackedConn, drainedFor time.Duration)

	accepted atomic.Uint64
	open     [numProtocols][numConnStates]atomic.Int64
	drained  [numReasons]atomic.Uint64 // closed after being drained
	forced   atomic.Uint64
	goaways  atomic.Uint64
}

func newTracker(mgr *Manager, clock Clock, drainTimeout time.Duration, log *slog.Logger, userState func(net.Conn, http.ConnState)) *tracker {
	return &tracker{
		mgr:          mgr,
		clock:        clock,
		rand:         mgr.opts.Rand,
		policy:       &ConnPolicy{},
		h2MinAge:     h2MinAge,
		drainTimeout: drainTimeout,
		log:          log,
		userState:    userState,
		conns:        make(map[*trackedConn]struct{}),
	}
}

// trackedConn is a connection accepted by a tracked listener: the net.Conn
// that net/http serves, and its drain record.
type trackedConn struct {
	net.Conn
	t        *tracker
	policy   *ConnPolicy
	accepted time.Time

	requests atomic.Int64
	proto    atomic.Uint32 // Protocol
	state    atomic.Int32  // http.ConnState
	drain    atomic.Uint32 // ConnDrainState
	active   atomic.Int32  // StateActive transitions; HTTP/2's first is the preface

	mu          sync.Mutex // guards the fields below and the open counts' updates
	marked      bool       // drain state left ConnNotDraining
	reason      DrainReason
	markedAt    time.Time
	idleSince   time.Time
	deadline    Timer
	idleCheck   Timer
	ageTimer    Timer
	goAwayTimer Timer         // HTTP/2: a GOAWAY waiting for h2MinAge
	cancel      func() bool   // unregisters the proactive drain callback
	goaway      func()        // HTTP/2 only: GOAWAY on this connection
	notify      chan struct{} // closed when marked; nil until asked for
	late        bool          // accepted during a drain: drained when idle
	forced      bool
	closed      bool
}

// trackingListener wraps the listeners a Server serves on.
type trackingListener struct {
	net.Listener
	t      *tracker
	policy *ConnPolicy

	closeOnce sync.Once
	closeErr  error
}

// Close closes the listener once: Drain or Shutdown close it, and then
// http.Server.Shutdown closes it again, which must not be an error.
func (l *trackingListener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.Listener.Close() })
	return l.closeErr
}

func (l *trackingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.t.add(nc, l.policy), nil
}

func (t *tracker) add(nc net.Conn, policy *ConnPolicy) *trackedConn {
	if policy == nil {
		policy = t.policy
	}
	c := &trackedConn{Conn: nc, t: t, policy: policy, accepted: t.clock.Now()}
	c.state.Store(int32(http.StateNew))
	t.accepted.Add(1)
	t.open[HTTP1][http.StateNew].Add(1)
	t.mu.Lock()
	t.conns[c] = struct{}{}
	final := t.final
	t.mu.Unlock()
	c.mu.Lock()
	if t.mgr.Draining() {
		// A client that connects during the drain is about to ask the
		// decision, which keeps the drain gradual for it; it is drained
		// proactively only if it goes idle (see setState).
		c.late = true
	} else {
		c.cancel = t.mgr.OnDrain(func() { t.endLimited(c, ReasonProactive) })
	}
	if policy.MaxConnectionAge > 0 {
		c.ageTimer = t.clock.AfterFunc(policy.age(t.rand()), func() { t.endLimited(c, ReasonMaxAge) })
	}
	c.mu.Unlock()
	if final {
		c.end(ReasonProactive)
	}
	return c
}

// endLimited ends c for reason (see end) as soon as the server's rate limit
// on proactive ends allows: now, or later on a timer. It never skips one.
func (t *tracker) endLimited(c *trackedConn, reason DrainReason) {
	if d := t.reserveEnd(); d > 0 {
		t.clock.AfterFunc(d, func() { c.end(reason) })
		return
	}
	c.end(reason)
}

// reserveEnd reserves one proactive end under the server's rate limit and
// returns how long to wait for it: zero means now.
func (t *tracker) reserveEnd() time.Duration {
	if t.limiter == nil {
		return 0
	}
	now := t.clock.Now()
	return t.limiter.ReserveN(now, 1).DelayFrom(now)
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

// connOf finds the tracked connection under a net.Conn that net/http or the
// HTTP/2 server hands us: ours, a *tls.Conn over ours, or the h2c wrapper.
func connOf(nc net.Conn) *trackedConn {
	for range 3 {
		switch c := nc.(type) {
		case *trackedConn:
			return c
		case *tls.Conn:
			nc = c.NetConn()
			if u, ok := nc.(interface{ UnencryptedNetConn() net.Conn }); ok {
				nc = u.UnencryptedNetConn()
			}
		default:
			return nil
		}
	}
	return nil
}

type connKey struct{}

// connContext is the Server's ConnContext: it makes a request's connection
// record one context lookup away.
func (t *tracker) connContext(ctx context.Context, nc net.Conn) context.Context {
	if c := connOf(nc); c != nil {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

func connFromContext(ctx context.Context) *trackedConn {
	c, _ := ctx.Value(connKey{}).(*trackedConn)
	return c
}

// connState is the Server's ConnState hook. It chains the user's.
func (t *tracker) connState(nc net.Conn, state http.ConnState) {
	if c := connOf(nc); c != nil {
		c.setState(state)
	}
	if t.userState != nil {
		t.userState(nc, state)
	}
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
		c.idleSince = c.t.clock.Now()
		switch {
		case c.marked && p == HTTP1:
			c.armIdleCheck(idleCloseDelay, c.closeIdle)
		case c.late && !c.marked:
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
	marked := c.marked
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
	wait := c.t.h2MinAge - c.t.clock.Now().Sub(c.accepted)
	if wait <= 0 {
		c.sendGoAway()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goAwayTimer == nil && !c.closed {
		c.goAwayTimer = c.t.clock.AfterFunc(wait, c.sendGoAway)
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
	c.marked = true
	c.reason = reason
	c.markedAt = c.t.clock.Now()
	timeout := c.t.drainTimeout
	if reason == ReasonMaxAge {
		timeout = c.policy.MaxConnectionAgeGrace
	}
	c.deadline = c.t.clock.AfterFunc(timeout, func() { c.forceClose("drain deadline") })
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
			c.armIdleCheck(idleCloseDelay-c.t.clock.Now().Sub(c.idleSince), c.closeIdle)
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
func (c *trackedConn) armIdleCheck(d time.Duration, then func()) {
	if c.idleCheck != nil {
		c.idleCheck.Stop()
	}
	since := c.idleSince
	c.idleCheck = c.t.clock.AfterFunc(max(d, 0), func() {
		c.mu.Lock()
		idle := http.ConnState(c.state.Load()) == http.StateIdle && c.idleSince.Equal(since) && !c.closed
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
	// Closing an idle connection (an HTTP/2 one waiting out its GOAWAY, one
	// that never sent a request) interrupts nothing: only a busy one is
	// forced.
	state := http.ConnState(c.state.Load())
	c.forced = state == http.StateActive || state == http.StateHijacked
	if !c.marked {
		// Ended by a drain cut short or by Close before its turn came.
		c.marked, c.reason, c.markedAt = true, ReasonProactive, c.t.clock.Now()
	}
	forced := c.forced
	c.mu.Unlock()
	c.drain.Store(uint32(ConnClosing))
	level, msg := slog.LevelDebug, "drainhttp: idle connection closed"
	if forced {
		level, msg = slog.LevelWarn, "drainhttp: connection force-closed"
	}
	c.t.log.Log(context.Background(), level, msg, "why", why,
		"remote", c.RemoteAddr().String(), "protocol", c.protocol().String(),
		"state", state.String(), "age", c.t.clock.Now().Sub(c.accepted).String())
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
	for _, t := range []Timer{c.deadline, c.idleCheck, c.ageTimer, c.goAwayTimer} {
		if t != nil {
			t.Stop()
		}
	}
	t := c.t
	t.open[c.protocol()][c.state.Swap(int32(http.StateClosed))].Add(-1)
	cancel, marked, reason, markedAt, forced := c.cancel, c.marked, c.reason, c.markedAt, c.forced
	c.goaway = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	// Count before forgetting, so that a drain that waits for the last
	// connection sees its counters final.
	if marked {
		t.drained[reason].Add(1)
		if forced {
			t.forced.Add(1)
		}
		t.mu.Lock()
		onDone := t.onDone
		t.mu.Unlock()
		if onDone != nil {
			onDone(c, t.clock.Now().Sub(markedAt))
		}
	}
	t.mu.Lock()
	delete(t.conns, c)
	if len(t.conns) == 0 && t.empty != nil {
		close(t.empty)
		t.empty = nil
	}
	t.mu.Unlock()
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

// drainAll drains every connection not yet draining, now: the drain
// sequence is over. Connections accepted from now on drain at once.
func (t *tracker) drainAll() {
	t.mu.Lock()
	t.final = true
	t.mu.Unlock()
	for _, c := range t.snapshot() {
		c.end(ReasonProactive)
	}
}

// closeAll closes every tracked connection at once, hijacked ones included.
func (t *tracker) closeAll(why string) {
	for _, c := range t.snapshot() {
		c.forceClose(why)
	}
}

// waitEmpty returns when no connection is tracked, or ctx ends.
func (t *tracker) waitEmpty(ctx context.Context) error {
	select {
	case <-t.emptied():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// emptied returns a channel closed once no connection is tracked.
func (t *tracker) emptied() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.conns) == 0 {
		return closedChan
	}
	if t.empty == nil {
		t.empty = make(chan struct{})
	}
	return t.empty
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

// goAwayAll sends GOAWAY to every HTTP/2 connection: the server is shutting
// down (net/http's own HTTP/2 server does this in Shutdown).
func (t *tracker) goAwayAll() {
	for _, c := range t.snapshot() {
		c.sendGoAway()
	}
}

func (t *tracker) snapshot() []*trackedConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	return conns
}

// openCount returns how many connections are open.
func (t *tracker) openCount() int64 {
	var n int64
	for p := range t.open {
		for _, s := range trackedStates {
			n += t.open[p][s].Load()
		}
	}
	return n
}
