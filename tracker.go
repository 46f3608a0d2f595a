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

	"golang.org/x/time/rate"
)

// tracker follows every connection of a Server, from Accept to its end,
// hijacked ones included (net/http forgets those). It wraps nothing:
// net/http serves each connection as the listener returned it, and the
// tracker finds its record from the net.Conn that ConnState and
// ConnContext pass.
type tracker struct {
	mgr          *Manager
	clock        Clock
	rand         func() float64
	drainTimeout time.Duration
	log          *slog.Logger
	userState    func(net.Conn, http.ConnState)
	policy       *ConnPolicy   // for listeners without their own
	limiter      *rate.Limiter // nil: proactive ends are not rate limited
	h2MinAge     time.Duration // see h2MinAge; tests may set zero
	noKeepAlives atomic.Bool   // SetKeepAlivesEnabled(false)
	// h2TLS is the TLSConfig of every HTTP/2 connection's own server.
	// Without one, net/http's HTTP/2 setup allocates one per connection
	// (half a kilobyte); it never handshakes with it, and only Go 1.26's
	// setup writes to it (the same values each time), which h2Setup
	// serializes.
	h2TLS   *tls.Config
	h2Setup sync.Mutex
	// countRequests makes every request counted, not only where
	// MaxRequestsPerConnection needs it: Adaptive tells probes by their
	// connection's first request.
	countRequests bool

	conns *connMap  // net.Conn (accepted, and as net/http's hooks see it) -> *conn
	epoch time.Time // the origin of monoNow

	mu           sync.Mutex
	n            int           // open connections
	final        bool          // the drain window is over: new connections drain at once
	empty        chan struct{} // closed when n becomes zero; nil if nobody waits
	hijacked     map[*conn]struct{}
	sweep        Timer // checks whether hijacked connections are still open
	observers    map[*func(DrainedConn)]struct{}
	observerList atomic.Pointer[[]func(DrainedConn)]
	onAccept     func(*conn) // the adaptive shutdown's view of connections: set before serving
	onClose      func(*conn)

	accepted atomic.Uint64
	drained  [numReasons]atomic.Uint64 // closed after being told
	forced   atomic.Uint64
	goaways  atomic.Uint64
}

func newTracker(mgr *Manager, drainTimeout time.Duration, log *slog.Logger, userState func(net.Conn, http.ConnState)) *tracker {
	t := &tracker{
		mgr:          mgr,
		clock:        mgr.opts.Clock,
		rand:         mgr.opts.Rand,
		policy:       &ConnPolicy{},
		h2MinAge:     h2MinAge,
		drainTimeout: drainTimeout,
		log:          log,
		userState:    userState,
		hijacked:     make(map[*conn]struct{}),
		epoch:        mgr.opts.Clock.Now(),
		conns:        newConnMap(),
		h2TLS:        &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
	}
	mgr.watch(t.drainReached)
	return t
}

// monoNow returns the time since the tracker started, in nanoseconds, plus
// one (so that it is never zero): on the real clock a monotonic reading
// only, the cheapest the request path can have (it reads it once per
// HTTP/1.1 request).
func (t *tracker) monoNow() int64 {
	if _, ok := t.clock.(realClock); ok {
		return int64(time.Since(t.epoch)) + 1
	}
	return int64(t.clock.Now().Sub(t.epoch)) + 1
}

// add starts tracking nc, just accepted on a listener with policy (nil:
// the server's).
func (t *tracker) add(nc net.Conn, policy *ConnPolicy) *conn {
	if policy == nil {
		policy = t.policy
	}
	// A drain that starts from now on gives c its proactive turn
	// (drainReached). One that is running keeps c until the window ends:
	// its client has just moved here, and is about to ask the decision.
	// (A drain that starts while c is added may miss it; the window's end
	// reaches it.)
	c := &conn{t: t, nc: nc, policy: policy, accepted: t.clock.Now().UnixNano(), late: t.mgr.Draining()}
	c.state.Store(int32(http.StateNew))
	t.accepted.Add(1)
	t.conns.store(nc, c)
	t.mu.Lock()
	t.n++
	final, onAccept := t.final, t.onAccept
	t.mu.Unlock()
	if policy.MaxConnectionAge > 0 {
		c.mu.Lock()
		c.ageTimer = t.clock.AfterFunc(policy.age(t.rand()), func() { c.endSoon(reasonMaxAge) })
		c.mu.Unlock()
	}
	if onAccept != nil {
		onAccept(c)
	}
	if final {
		c.end(reasonWindowEnd)
	}
	return c
}

// lookup returns the record of nc, which net/http passes to its hooks: the
// accepted conn itself, or a *tls.Conn over it (ServeTLS), which is then
// stored as a second key.
func (t *tracker) lookup(nc net.Conn) *conn {
	if c := t.conns.load(nc); c != nil {
		return c
	}
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil
	}
	c := t.conns.load(tc.NetConn())
	if c == nil {
		return nil
	}
	c.mu.Lock()
	if c.drainState() != closed && c.alias == nil {
		c.alias = tc
		t.conns.store(tc, c)
	}
	c.mu.Unlock()
	return c
}

// remove forgets c.
func (t *tracker) remove(c *conn, hijacked bool) {
	t.conns.delete(c.nc)
	c.mu.Lock()
	alias := c.alias
	c.mu.Unlock()
	if alias != nil {
		t.conns.delete(alias)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if hijacked {
		delete(t.hijacked, c)
	}
	t.n--
	if t.n == 0 && t.empty != nil {
		close(t.empty)
		t.empty = nil
	}
}

type connKey struct{}

// connContext is the outer server's ConnContext, after the user's: it makes
// a request's connection record one context lookup away, by making the
// record the connection's context.
func (t *tracker) connContext(ctx context.Context, nc net.Conn) context.Context {
	if c := t.lookup(nc); c != nil {
		c.Context = ctx
		return c
	}
	return ctx
}

// Value makes a record the context that holds it.
func (c *conn) Value(key any) any {
	if key == (connKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func connFromContext(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

// drainReached gives every connection open when a drain sequence reaches
// the server's manager its turn in the proactive part of the window, at a
// uniformly random time: one registration for the whole server, so that a
// connection costs nothing for it until a drain starts. Connections that
// arrive later are kept until the window ends, unless they go quiet.
func (t *tracker) drainReached(s *sequence) {
	now := t.clock.Now()
	for _, c := range t.snapshot() {
		if !c.late {
			c.scheduleEnd(now.Add(s.proactiveDelay(now, t.rand)), reasonProactive)
		}
	}
}

// drainAll ends every connection: the drain window is over. Each one's
// deadline is at most DrainTimeout from now, whatever a policy gave it.
// Connections accepted from now on end at once.
func (t *tracker) drainAll() {
	t.mu.Lock()
	t.final = true
	t.mu.Unlock()
	at := t.clock.Now().Add(t.drainTimeout)
	for _, c := range t.snapshot() {
		c.bound(at)
		c.end(reasonWindowEnd)
	}
}

// closeAll closes every tracked connection at once, hijacked ones included.
func (t *tracker) closeAll(why string) {
	for _, c := range t.snapshot() {
		c.closeNow(why)
	}
}

// goAwayAll tells every HTTP/2 connection to end, as net/http's own
// HTTP/2 server does in Shutdown.
func (t *tracker) goAwayAll() {
	for _, c := range t.snapshot() {
		if c.protocol() != protoHTTP1 {
			c.end(reasonShutdown)
		}
	}
}

// setKeepAlives passes SetKeepAlivesEnabled on to every HTTP/2
// connection's own server.
func (t *tracker) setKeepAlives(v bool) {
	t.noKeepAlives.Store(!v)
	for _, c := range t.snapshot() {
		c.mu.Lock()
		h2 := c.h2
		c.mu.Unlock()
		if h2 != nil {
			h2.srv.SetKeepAlivesEnabled(v)
		}
	}
}

// emptied returns a channel closed once no connection is tracked.
func (t *tracker) emptied() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		return closedChan
	}
	if t.empty == nil {
		t.empty = make(chan struct{})
	}
	return t.empty
}

// snapshot returns every tracked connection once.
func (t *tracker) snapshot() []*conn { return t.conns.records() }

// openCount returns how many connections are open.
func (t *tracker) openCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}
