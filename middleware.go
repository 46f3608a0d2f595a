package drainhttp

import (
	"log/slog"
	"net/http"

	"golang.org/x/net/http/httpguts"
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
// server (both net/http's and x/net's) answers with a GOAWAY for that one
// connection: in-flight requests finish and the client opens a new
// connection for the next one. This is what Envoy's HTTP connection manager
// does when the listener's drain decision fires.
//
// On a connection served by a Server, the middleware also marks the
// connection draining, which starts its drain deadline and wakes
// Draining(ctx); every later response on that connection carries
// Connection: close without asking d again. On a plain http.Server the
// middleware only sets the header.
//
// Upgrade requests (WebSocket) and CONNECT are never given Connection: close,
// so that the upgrade still succeeds; their connection is still marked
// draining and is closed at its deadline.
//
// When d is false and the connection is not draining, the middleware costs
// a context lookup and d.DrainClose(), and allocates nothing. It does not
// wrap the ResponseWriter, so every optional interface (http.Flusher,
// http.Hijacker, io.ReaderFrom, http.NewResponseController) is untouched.
//
// Middleware panics if d is nil. A nil handler given to the constructor means
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
	d     Decision
	next  http.Handler
	log   *slog.Logger
	retry *retryAfter // Server only
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.retry != nil && m.retry.reject(w, r) {
		return
	}
	if c := connFromContext(r.Context()); c != nil {
		c.onRequest(m.d, w, r)
	} else if m.d.DrainClose() {
		if m.log != nil {
			m.log.Debug("drainhttp: connection told to close", "remote", r.RemoteAddr, "proto", r.Proto)
		}
		setConnectionClose(w, r)
	}
	m.next.ServeHTTP(w, r)
}

// closeAfter makes the response to r end c. On HTTP/2 the header makes the
// server send GOAWAY itself, which is then c's one GOAWAY; a connection
// younger than h2MinAge is sent its GOAWAY when it reaches that age.
func (c *trackedConn) closeAfter(w http.ResponseWriter, r *http.Request) {
	if c.protocol() == HTTP1 {
		setConnectionClose(w, r)
		return
	}
	if c.age(c.t.clock.Now()) < c.t.h2MinAge {
		c.goAwayWhenOld()
		return
	}
	if setConnectionClose(w, r) {
		c.takeGoAway()
	}
}

// setConnectionClose sets Connection: close on the response to r, unless r
// is an upgrade or CONNECT, and reports whether it did.
func setConnectionClose(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodConnect || httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return false
	}
	w.Header().Set("Connection", "close")
	return true
}
