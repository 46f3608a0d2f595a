// Package drainhttp gives net/http servers Envoy-grade connection draining:
// a SIGTERM, a rollout or a binary upgrade loses no request.
//
// Replace http.Server with Server (same fields, same methods) and call
// ListenAndServeUntilSignal, or Drain yourself. A drain then runs like
// Envoy's:
//
//  1. Readiness (ReadyHandler) fails at once; for ShutdownDelay the server
//     goes on serving normally so that load balancers notice.
//  2. For DrainTime the server keeps accepting and serving, while its
//     Manager tells connections to close: each request asks the Decision
//     (Gradual: with a probability rising linearly from 0 to 1 over the
//     window; Immediate: always), and a "yes" ends the connection
//     gracefully: an HTTP/1.1 response carries Connection: close, an HTTP/2
//     connection gets a GOAWAY and finishes its streams.
//  3. Connections that would never ask, because they are idle, are drained
//     proactively at random times over the first quarter of the window: idle
//     HTTP/1.1 connections are closed (once they have been idle for a moment,
//     to dodge the keep-alive race), idle HTTP/2 connections get a GOAWAY
//     from outside any request.
//  4. When the window ends the listeners close, every connection still open
//     is told to close, and each has a hard deadline, DrainTimeout after it
//     was told: a stuck handler, a slow client or a hijacked connection is
//     closed then, whatever it is doing.
//
// Long-lived handlers (server-sent events, long polls, WebSockets) learn that
// their connection is draining from Draining(ctx), and can finish before the
// deadline.
//
// Restarter adds hot restart: on SIGHUP the binary is re-executed with the
// listening sockets handed over, and the old process drains its connections
// as above and exits (Envoy's parent shutdown sequence).
//
// The pieces also stand alone: Manager is Envoy's drain manager (strategies,
// child managers per listener, health-check fail/ok, proactive callbacks),
// and Middleware puts any Decision in front of a plain http.Server, for
// example in a github.com/justinas/alice chain.
//
// Limits. Go's HTTP/2 GOAWAY is single-phase, not RFC 9113's two-phase one:
// streams a client opens in the instant before it reads the GOAWAY are
// refused, and Go's client retries them on a new connection. An HTTP/2
// connection that never sends a request is not sent a GOAWAY (Go's client
// would fail that first request) and is closed at its deadline instead.
// ConnState of an HTTP/2 connection describes the connection, not its
// streams. On a plain http.Server, Middleware can only set Connection: close:
// connection tracking, deadlines, proactive drain and Draining need Server.
package drainhttp

import (
	"context"
	"errors"
)

// ErrInvalidOption is wrapped by every error about a bad option or argument
// reported at construction: a negative duration, a fraction out of range,
// an unknown strategy, a nil handler or decision.
var ErrInvalidOption = errors.New("drainhttp: invalid option")

// Draining returns a channel that is closed when the connection of the
// request whose context is ctx is told to close (a drain, a policy, a
// failed health check), or closes, so that a long-lived handler
// (server-sent events, long poll, WebSocket) can finish its work and
// return before the connection's deadline. It returns nil, a channel that
// never closes, if the request is not served by a Server.
func Draining(ctx context.Context) <-chan struct{} {
	if c := connFromContext(ctx); c != nil {
		return c.drainingChan()
	}
	return nil
}
