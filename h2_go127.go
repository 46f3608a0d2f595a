//go:build go1.27

package drainhttp

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// servesAnyTLSConn reports whether net/http serves any connection with a
// ConnectionState method as TLS (and HTTP/2 over it, if it says "h2"). Go
// 1.27 does, so every HTTP/2 connection is served through an h2TLSWire and
// gets the two-phase GOAWAY.
const servesAnyTLSConn = true

// serve has srv Serve the connection from a one-connection listener, then
// waits for its end. Go 1.27's HTTP/2 server is reached only from a
// net/http connection: the TLSNextProto["h2"] that its setup puts on srv
// just closes the connection it is given (the entry only tells that
// HTTP/2 is on), and it sets no "unencrypted_http2" entry.
func (hc *h2Conn) serve(nc net.Conn, h http.Handler, proto connProtocol) {
	var ended sync.WaitGroup // a channel costs 96 bytes more
	ended.Add(1)
	l := hc.listen(nc, h)
	// srv's own net/http connection reports new and closed, once each:
	// the outer server has reported the first, the second ends the wait.
	hc.srv.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
		case http.StateClosed:
			ended.Done()
		default:
			hc.state(nc, state)
		}
	}
	hc.track(proto)
	// Serve sets HTTP/2 up on srv, then hands the connection to a
	// goroutine of its own and returns. Go 1.27's setup only reads the
	// shared TLSConfig: no lock is needed.
	hc.srv.Serve(l)
	if !l.taken() {
		nc.Close()
		return
	}
	ended.Wait()
}

// listen sets srv up to serve nc, through an h2TLSWire, from the
// one-connection listener it returns, with the connection's base context
// (BaseContext).
func (hc *h2Conn) listen(nc net.Conn, h http.Handler) *oneConnListener {
	srv := hc.srv
	// net/http passes the connection's base context (BaseContext, then
	// ConnContext) through this unadvertised method of h.
	ctx := context.Background()
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		ctx = bc.BaseContext()
	}
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	tc, _ := nc.(*tls.Conn)
	preface := prefaceUnread
	if tc == nil {
		srv.Handler = clearTLS{h}
		preface = prefaceReplayed
	}
	hc.wire = newH2Wire(nc, hc, preface)
	return &oneConnListener{conn: h2TLSWire{hc.wire, tc}}
}

// h2TLSWire is an h2Wire that reports a TLS connection state. Since Go
// 1.27, net/http serves any connection with a ConnectionState method as
// TLS, and HTTP/2 over it if its NegotiatedProtocol is "h2". For a TLS
// connection the state is its own; for h2c it is made up (TLS 1.3, h2),
// so that the preface need not be read by an HTTP/1 reader first, and
// requests then have their TLS field cleared (clearTLS).
type h2TLSWire struct {
	*h2Wire
	tc *tls.Conn // nil: h2c
}

// ConnectionState is the *tls.Conn's (asked twice per connection, by
// net/http and its HTTP/2 server), or h2cState.
func (w h2TLSWire) ConnectionState() tls.ConnectionState {
	if w.tc == nil {
		return h2cState
	}
	return w.tc.ConnectionState()
}

// h2cState is the made-up TLS state of an h2c connection served through an
// h2TLSWire: enough for net/http's HTTP/2 checks (TLS 1.2 or later, a
// permitted cipher suite) to pass.
var h2cState = tls.ConnectionState{
	Version:            tls.VersionTLS13,
	HandshakeComplete:  true,
	CipherSuite:        tls.TLS_AES_128_GCM_SHA256,
	NegotiatedProtocol: "h2",
}

// clearTLS serves h2c requests that came through an h2TLSWire: their TLS
// state is made up, and net/http's own h2c requests have none.
type clearTLS struct{ h http.Handler }

func (c clearTLS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.TLS = nil
	c.h.ServeHTTP(w, r)
}

// oneConnListener hands its one connection to Serve, then reports itself
// closed at once: a second Accept that blocked would make the
// per-connection server's Shutdown wait for it.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn
	done bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return nil, net.ErrClosed
	}
	l.done = true
	return l.conn, nil
}

func (l *oneConnListener) taken() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

func (l *oneConnListener) Close() error { return nil }

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }
