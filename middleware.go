package drainhttp

import (
	"log/slog"
	"net/http"
	"strings"
)

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middlewareConfig)

type middlewareConfig struct {
	log *slog.Logger
}

// WithLogger makes the middleware log each connection it tells to close, at
// Debug level. A nil logger (the default) logs nothing.
func WithLogger(l *slog.Logger) MiddlewareOption {
	return func(c *middlewareConfig) { c.log = l }
}

// Middleware returns a constructor, in the shape github.com/justinas/alice
// chains, that drains connections as d decides: when d.DrainClose() is true
// for a request, the response carries Connection: close. Go's HTTP/1.1
// server then closes the connection after the response, and its HTTP/2
// server answers with a GOAWAY for that one connection: in-flight requests
// finish and the client opens a new connection for the next one. This is
// what Envoy's HTTP connection manager does when the listener's drain
// decision fires.
//
// On a connection served by a Server, d is asked in addition to the
// server's own drain, and a true answer tells the connection to close the
// way the server's drain does: its deadline starts, Draining(ctx) is
// closed, every later HTTP/1.1 response carries Connection: close, and an
// HTTP/2 connection is sent a two-phase GOAWAY from outside the response
// (see Server). The server's policies and request counts are not applied
// again: nesting Middleware(mgr.NewChild(...)) under a Server adds one
// decision, nothing else. On a plain http.Server the middleware only sets
// the header.
//
// HTTP/1.1 upgrade requests (WebSocket) and CONNECT are never given
// Connection: close, so that the upgrade still succeeds; their connection
// is still told to close, and closed at its deadline. On HTTP/2 a CONNECT
// stream is one stream among others: the connection gets its GOAWAY.
//
// When d is false and the connection is not draining, the middleware costs
// a context lookup and d.DrainClose(), and allocates nothing. It does not
// wrap the ResponseWriter, so every optional interface (http.Flusher,
// http.Hijacker, io.ReaderFrom, http.NewResponseController) is untouched.
//
// Middleware panics if d is nil, as a nil handler would on its first
// request. A nil handler given to the constructor means
// http.DefaultServeMux, as in alice.
func Middleware(d Decision, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	if d == nil {
		panic("drainhttp: Middleware with nil Decision")
	}
	var cfg middlewareConfig
	for _, o := range opts {
		o(&cfg)
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			next = http.DefaultServeMux
		}
		return &middleware{d: d, next: next, log: cfg.log}
	}
}

type middleware struct {
	d    Decision
	next http.Handler
	log  *slog.Logger
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c := connFromContext(r.Context()); c != nil {
		if c.drainState() != notDraining {
			c.closeAfter(w, r)
		} else if m.d.DrainClose() {
			c.tell(decisionReason(m.d), true)
			c.closeAfter(w, r)
		}
	} else if m.d.DrainClose() {
		if m.log != nil {
			m.log.Debug("drainhttp: connection told to close", "remote", r.RemoteAddr, "proto", r.Proto)
		}
		setConnectionClose(w, r)
	}
	m.next.ServeHTTP(w, r)
}

// decisionReason is why a true answer of d tells a connection to close:
// the health check, if d is a Manager whose health check is failed (and
// that is not draining), or the decision.
func decisionReason(d Decision) drainReason {
	if m, ok := d.(*Manager); ok && m.HealthCheckFailed() && !m.Draining() {
		return reasonHealthCheck
	}
	return reasonDecision
}

// serverMiddleware is the first handler of every request a Server serves:
// the server's drain decision, its policies and RetryAfter.
type serverMiddleware struct {
	s     *Server
	next  http.Handler
	retry *retryAfter // nil: RetryAfter is off
}

func (m *serverMiddleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := connFromContext(r.Context())
	if c == nil {
		m.next.ServeHTTP(w, r)
		return
	}
	first := c.onRequest(m.s.mgr, w, r)
	if a := m.s.adaptive; a != nil && first {
		defer a.firstRequestDone(c)
	}
	if m.retry != nil && m.retry.reject(c, w, r) {
		return
	}
	m.next.ServeHTTP(w, r)
}

// onRequest applies the server's drain decision and the connection's
// policies to a request on c, and makes the response end c if one of them
// says so. It reports whether this is c's first request. While nothing
// fires it is a few atomic operations and no allocation.
//
// On HTTP/1.1 the drain decision is asked on every request, as Envoy does.
// On HTTP/2, where one connection carries a whole client's traffic, a
// drain is applied per connection instead: each connection open when the
// drain starts gets its GOAWAY at its turn in the proactive part of the
// window, and one opened during the drain is kept until the window ends,
// so that a client is sent at most two GOAWAYs per drain (on the
// connection it had, and on the one it opened since), not one per
// reconnect.
// A failed health check tells every connection as its next request
// arrives, with no deadline.
func (c *conn) onRequest(m *Manager, w http.ResponseWriter, r *http.Request) (first bool) {
	p := c.policy
	var n int64
	if p.MaxRequestsPerConnection > 0 || c.t.countRequests {
		n = c.requests.Add(1)
	}
	if c.drainState() != notDraining {
		c.closeAfter(w, r)
		return n == 1
	}
	h1 := c.protocol() == protoHTTP1
	switch v := m.verdict(h1); {
	case v == closeForHealthCheck:
		c.tell(reasonHealthCheck, false)
	case v == closeForDrain:
		c.tell(reasonDecision, true)
	case p.MaxRequestsPerConnection > 0 && n >= p.MaxRequestsPerConnection:
		c.tell(reasonMaxRequests, true)
	case p.GoAwayChance > 0 && (p.GoAwayChanceHTTP1 || !h1) && c.t.rand() < p.GoAwayChance:
		// Rate limited like the other proactive ends: if the limiter
		// allows it only later, the connection is ended then.
		if !c.endSoon(reasonGoAwayChance) {
			return n == 1
		}
	default:
		return n == 1
	}
	c.closeAfter(w, r)
	return n == 1
}

// closeAfter makes the response to r end c, which has been told to close:
// Connection: close on HTTP/1.1, unless r is an upgrade or CONNECT (its
// connection closes at its deadline); a GOAWAY from outside the response
// on HTTP/2.
func (c *conn) closeAfter(w http.ResponseWriter, r *http.Request) {
	if c.protocol() == protoHTTP1 {
		setConnectionClose(w, r)
		return
	}
	c.act()
}

// setConnectionClose sets Connection: close on the response to r, unless r
// is an HTTP/1.1 upgrade or CONNECT, and reports whether it did.
func setConnectionClose(w http.ResponseWriter, r *http.Request) bool {
	if r.ProtoMajor == 1 && (r.Method == http.MethodConnect || hasToken(r.Header["Connection"], "upgrade")) {
		return false
	}
	w.Header().Set("Connection", "close")
	return true
}

// hasToken reports whether the comma-separated header values hold token,
// compared case-insensitively, as net/http reads Connection. (x/net's
// httpguts has this function; importing it links a second copy of the
// IDNA tables net/http already vendors, about 16 KB.)
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(part, " \t"), token) {
				return true
			}
		}
	}
	return false
}
