package drainhttp

import (
	"context"
	"crypto/tls"
	"fmt"
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
	t := &tracker{
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
	mgr.watch(t.drainReached)
	return t
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
	c := &trackedConn{Conn: nc, t: t, policy: policy, accepted: t.clock.Now().UnixNano()}
	c.state.Store(int32(http.StateNew))
	t.accepted.Add(1)
	t.open[HTTP1][http.StateNew].Add(1)
	t.mu.Lock()
	t.conns[c] = struct{}{}
	final := t.final
	t.mu.Unlock()
	c.mu.Lock()
	// A drain that starts from now on gives c its proactive turn
	// (drainReached). A client that connects during a drain is about to ask
	// the decision, which keeps the drain gradual for it: it is drained
	// proactively only if it goes idle (see setState).
	c.late = t.mgr.Draining()
	if policy.MaxConnectionAge > 0 {
		c.ageTimer = t.clock.AfterFunc(policy.age(t.rand()), func() { t.endLimited(c, ReasonMaxAge) })
	}
	c.mu.Unlock()
	if final {
		c.end(ReasonProactive)
	}
	return c
}

// drainReached gives every connection its turn in the proactive window of
// a drain sequence that reached the server's manager: one registration for
// the whole server, so that a connection costs nothing for it until a drain
// starts.
func (t *tracker) drainReached(s *sequence) {
	for _, c := range t.snapshot() {
		c.scheduleProactive(s)
	}
}

// forget removes a closed connection.
func (t *tracker) forget(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	if len(t.conns) == 0 && t.empty != nil {
		close(t.empty)
		t.empty = nil
	}
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
