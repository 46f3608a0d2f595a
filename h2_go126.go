//go:build !go1.27

package drainhttp

import (
	"crypto/tls"
	"net"
	"net/http"
)

// servesAnyTLSConn reports whether net/http serves any connection with a
// ConnectionState method as TLS (and HTTP/2 over it, if it says "h2"). Go
// 1.26 requires a *tls.Conn, so drainhttp cannot see the bytes of an
// HTTP/2 connection over TLS there, and sends it net/http's single-phase
// GOAWAY; h2c connections get the two-phase one through an h2Wire.
const servesAnyTLSConn = false

// serve hands the connection to the HTTP/2 entry points that net/http's
// setup puts in srv.TLSNextProto, "h2" and "unencrypted_http2", and so
// serves it on the calling goroutine until it ends. Serve would instead
// start a net/http connection of srv's own on a goroutine of its own, and
// for h2c give it a second pair of 4 KB buffers to read the preface again.
// The entries do what net/http's connection would have done next: they
// take the base context from h's BaseContext method, and report the
// streams' active and idle to srv.ConnState.
func (hc *h2Conn) serve(nc net.Conn, h http.Handler, proto connProtocol) {
	srv := hc.srv
	srv.ConnState = func(_ net.Conn, state http.ConnState) { hc.state(nc, state) }
	hc.t.setUpH2(srv)
	key := "h2"
	tc, _ := nc.(*tls.Conn)
	if proto == protoH2C {
		hc.wire = newH2Wire(nc, hc, prefaceConsumed)
		key, tc = "unencrypted_http2", unencryptedTLSConn(hc.wire)
	}
	next := srv.TLSNextProto[key]
	if next == nil {
		// The setup declined HTTP/2 (a GODEBUG set since the outer
		// server's was done): close, as Serve would on its error.
		nc.Close()
		return
	}
	hc.track(proto)
	next(srv, tc, h)
}

// setUpH2 has net/http set HTTP/2 up on srv, as Serve does before its
// first Accept, on a listener that is closed already. Go 1.26's setup
// writes to srv.TLSConfig, which every connection's server shares: the
// lock keeps the writes apart.
func (t *tracker) setUpH2(srv *http.Server) {
	t.h2Setup.Lock()
	defer t.h2Setup.Unlock()
	srv.Serve(probeListener{})
}

// unencryptedTLSConn wraps c as net/http hands an h2c connection to
// TLSNextProto["unencrypted_http2"]: in a *tls.Conn never used for TLS,
// whose NetConn has an UnencryptedNetConn method.
func unencryptedTLSConn(c net.Conn) *tls.Conn {
	return tls.Client(unencryptedNetConn{c}, nil)
}

// unencryptedNetConn carries an h2c connection inside a *tls.Conn.
type unencryptedNetConn struct{ net.Conn }

func (c unencryptedNetConn) UnencryptedNetConn() net.Conn { return c.Conn }
