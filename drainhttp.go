// Package drainhttp gives net/http servers Envoy-grade connection draining:
// a SIGTERM, a rollout or a binary upgrade loses no request.
//
// Replace http.Server with Server (the same fields, the same methods) and
// call ListenAndServeUntilSignal, or Drain yourself. net/http still serves
// every connection, exactly as the listener returned it, with its own
// HTTP/1.1 and HTTP/2; drainhttp watches through net/http's hooks and
// decides. A drain runs like Envoy's, in phases (see Phase, OnPhase):
//
//  1. Readiness (ReadyHandler) fails at once. For ShutdownDelay the server
//     goes on serving normally so that load balancers notice; with
//     Adaptive, only until it sees that they have: every checker has seen
//     enough 503s and no new connection arrives (AdaptiveShutdown).
//  2. For DrainTime the server keeps accepting and serving while it tells
//     connections to close. Each HTTP/1.1 request asks the decision
//     (Gradual: with a probability rising linearly from 0 to 1 over the
//     window; Immediate: always), and a yes gives its response Connection:
//     close. Each HTTP/2 connection open at the start is sent a GOAWAY at
//     its turn, at a random time in the first quarter of the window, from
//     outside any request; one opened during the drain is kept until the
//     window ends. Idle HTTP/1.1 connections are closed at their turn too,
//     but only once idle for longer than their client's rhythm, so as not
//     to race a request it is sending.
//  3. When the window ends, every connection is told to close, each with a
//     hard deadline DrainTimeout away: a stuck handler, a slow client or a
//     hijacked connection is closed then, whatever it is doing. The
//     listeners stop taking connections, serve what waits in their accept
//     queues, and close: no queued connection is reset, and a client that
//     comes later is refused cleanly, before it has sent anything.
//
// The HTTP/2 GOAWAY is RFC 9113's two-phase one where drainhttp can see
// the connection's frames (h2c, and TLS from Go 1.27): a GOAWAY with the
// highest stream id and a PING, then, once the client has acknowledged the
// PING, the final GOAWAY, so that no stream the client sent in the
// meantime is refused. Long-lived handlers (server-sent events, long
// polls, WebSockets) learn that their connection is closing from
// Draining(ctx), and can finish before the deadline.
//
// The pieces also stand alone: Manager is Envoy's drain manager
// (strategies, child managers per listener, health-check fail/ok,
// proactive callbacks), and Middleware puts any Decision in front of a
// plain http.Server, for example in a github.com/justinas/alice chain.
// Integrations live in subpackages, so that a program pays only for what
// it uses: drainhttp/drainprom (Prometheus metrics), drainhttp/admin (an
// Envoy-like admin handler and status page), drainhttp/restart (hot
// restart, Envoy's parent shutdown sequence, and systemd sockets).
//
// Limits:
//   - On Go 1.26, an HTTP/2 connection over TLS gets net/http's
//     single-phase GOAWAY (net/http serves HTTP/2 only on a *tls.Conn
//     there): streams a client opens in the instant before it reads it are
//     refused; Go's client retries those whose bodies it can replay.
//   - Go's own client fails a request whose body it cannot replay if any
//     GOAWAY arrives while it is choosing the connection for it (it closes
//     the body): drainhttp pauses the connection's writes for 5 ms before
//     its GOAWAY, which keeps that race from happening in practice, and
//     sends each client at most two GOAWAYs per drain (on the connection
//     it had, and at the window's end on the one it opened since), not one
//     per reconnect.
//   - An HTTP/2 connection that has not acknowledged the server's SETTINGS
//     (or, on Go 1.26 over TLS, sent a request) gets no GOAWAY, since Go's
//     client fails its first request then; it is closed at its deadline.
//   - On Go 1.27, each HTTP/2 connection is served on one goroutine more
//     than http.Server uses, and costs its stack: Go 1.27's net/http has no
//     public way to serve one HTTP/2 connection on the caller's goroutine.
//   - Closing a listener without resets needs Linux (a socket filter and
//     SO_BINDTODEVICE); elsewhere it closes at once, as net/http does. A
//     listener marked SharedListener (a socket systemd keeps) is only
//     closed. An MPTCP socket (net.Listen's default on Linux since Go 1.24;
//     ListenAndServe uses TCP) takes no filter: clients on the same host
//     can still be accepted until it closes.
//   - Telling an idle HTTP/1.1 connection from one whose next request has
//     begun to arrive (net/http reports it idle until it has the whole
//     header) needs Linux too (SIOCINQ and TCP_INFO); elsewhere the idle
//     close cannot see such a request.
//   - A hijacked connection whose type gives no access to its socket is
//     tracked until its deadline or Close.
//   - On a plain http.Server, Middleware can only set Connection: close:
//     connection tracking, deadlines, proactive drain and Draining need
//     Server.
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
