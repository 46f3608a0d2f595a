package drainhttp

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"

	"golang.org/x/net/http2"
)

// This file serves every HTTP/2 connection of an http.Server with its own
// x/net http2.Server, joined by http2.ConfigureServer to its own dummy
// *http.Server, so that dummy.Shutdown sends GOAWAY(NO_ERROR) on that one
// connection, from outside any request. There is no public
// API for that in net/http. x/net marks this server API Deprecated; using it
// is deliberate and confined to this file and its two toolchain halves:
//
//   - h2conn_go126.go: x/net's own (legacy) HTTP/2 server (Go < 1.27, or the
//     http2legacy build tag). It is given BaseConfig: srv, exactly as net/http's
//     bundled copy is, so ConnState, timeouts, ErrorLog, HTTP2, keep-alive state
//     and ServerContextKey are the outer server's.
//   - h2conn_go127.go: x/net wraps net/http's internal HTTP/2 server. A non-nil
//     BaseConfig would be copied into a one-off http.Server and the dummy would
//     no longer reach the connection, so BaseConfig is nil and the dummy carries
//     the outer server's settings.
//
// Tests (h2conn_test.go) check under both toolchains that the GOAWAY arrives.

// installH2 takes over srv.TLSNextProto["h2"] and
// srv.TLSNextProto["unencrypted_http2"] so that every HTTP/2 connection (TLS
// via ALPN, and h2c with prior knowledge when the caller has set
// srv.Protocols.SetUnencryptedHTTP2(true)) is served by its own x/net
// http2.Server. It must be called before srv starts serving.
//
// conf holds the HTTP/2 settings (may be nil). It is copied per connection and
// must never have been passed to http2.ConfigureServer itself. Its IdleTimeout
// falls back to srv.IdleTimeout, then srv.ReadTimeout, like net/http.
//
// For every HTTP/2 connection, before its first frame is served,
// onConn(key, proto, goaway) is called on the connection's serving goroutine.
// key is the net.Conn that srv.ConnState and srv.ConnContext see for the
// connection (the *tls.Conn for "h2", the plain conn for "h2c"). goaway sends
// GOAWAY(NO_ERROR) on that connection only: in-flight streams finish, then the
// connection closes. goaway returns at once, may be called more than once and
// from any goroutine, and is a no-op once the connection has ended. A goaway
// before the server has registered the connection (before the connection's
// first StateActive) is lost; a GOAWAY before the first request makes Go's
// client fail that request, so arm it after the second StateActive.
//
// Taking over "h2" removes net/http's own "GOAWAY every HTTP/2 connection on
// Shutdown" hook: the caller must srv.RegisterOnShutdown a function that calls
// every live goaway, or Shutdown waits for its context to expire.
func installH2(srv *http.Server, conf *http2.Server, onConn func(key net.Conn, proto string, goaway func())) {
	if srv.TLSNextProto == nil {
		srv.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler), 2)
	}
	srv.TLSNextProto[http2.NextProtoTLS] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
		serveH2(hs, conf, tc, h, false, "h2", onConn)
	}
	// net/http hands h2c connections (preface already read) to this key,
	// wrapped in a *tls.Conn whose NetConn has an UnencryptedNetConn method.
	srv.TLSNextProto["unencrypted_http2"] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
		u, ok := tc.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			if hs.ErrorLog != nil {
				hs.ErrorLog.Print("drainhttp: TLS conn unexpectedly found in unencrypted HTTP/2 handoff")
			}
			tc.NetConn().Close()
			return
		}
		serveH2(hs, conf, u.UnencryptedNetConn(), h, true, "h2c", onConn)
	}
}

// serveH2 serves one HTTP/2 connection c on the caller's goroutine (net/http's
// per-connection goroutine) and returns when the connection has ended.
func serveH2(srv *http.Server, conf *http2.Server, c net.Conn, h http.Handler, sawPreface bool, proto string,
	onConn func(net.Conn, string, func())) {
	// net/http passes the connection's base context (BaseContext, then
	// ConnContext applied) through this unadvertised method on h.
	var ctx context.Context
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		ctx = bc.BaseContext()
	}

	h2s := new(http2.Server)
	if conf != nil {
		*h2s = *conf
	}
	if h2s.IdleTimeout == 0 {
		h2s.IdleTimeout = srv.IdleTimeout
		if h2s.IdleTimeout == 0 {
			h2s.IdleTimeout = srv.ReadTimeout
		}
	}
	dummy := newH2Dummy(srv)
	// Registers h2s's graceful shutdown as dummy's OnShutdown hook. It can
	// only fail on a TLSConfig with bad cipher suites; the dummy has none.
	if err := http2.ConfigureServer(dummy, h2s); err != nil {
		if srv.ErrorLog != nil {
			srv.ErrorLog.Printf("drainhttp: configuring HTTP/2: %v", err)
		}
		c.Close()
		return
	}

	hc := new(h2Conn)
	hc.dummy.Store(dummy)
	defer hc.dummy.Store(nil) // goaway becomes a no-op; the dummy can be freed
	if onConn != nil {
		onConn(c, proto, hc.goaway)
	}
	h2s.ServeConn(c, h2ServeOpts(srv, ctx, h, sawPreface))
}

// h2Conn is the goaway handle of one HTTP/2 connection.
type h2Conn struct {
	dummy atomic.Pointer[http.Server] // nil once the connection has ended
}

// goaway starts a graceful shutdown of the connection. dummy has no
// listeners and no connections of its own, so Shutdown only runs its
// OnShutdown hook (in a new goroutine, which sends the GOAWAY) and returns.
func (c *h2Conn) goaway() {
	if d := c.dummy.Load(); d != nil {
		_ = d.Shutdown(context.Background())
	}
}
