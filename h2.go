package drainhttp

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// Every HTTP/2 connection is served by net/http's own HTTP/2 server, through
// an http.Server of its own: the outer server's TLSNextProto["h2"] and
// ["unencrypted_http2"] hand it the connection, and that server's Shutdown
// then sends a GOAWAY on that one connection, from outside any request
// (net/http's HTTP/2 setup registers the graceful shutdown of the server's
// connections with RegisterOnShutdown). net/http has no other public way
// to do that. On Go 1.26 the outer server's goroutine serves the
// connection itself, through the HTTP/2 entry points that the setup puts
// in the connection's server's TLSNextProto; Go 1.27's entries do not
// serve, so there that server's Serve takes the connection from a
// one-connection listener, on a goroutine of its own, while the outer one
// waits (h2_go126.go, h2_go127.go). Where drainhttp may see the
// connection's bytes (h2c; TLS from Go 1.27), the GOAWAY is RFC 9113's
// two-phase one, which refuses no stream: a heads-up GOAWAY(2^31-1) and a
// PING written between the server's frames, then, once the PING's ACK is
// read, the server's own final GOAWAY. Elsewhere (TLS on Go 1.26) it is
// the server's single-phase GOAWAY.

// h2MinAge is the youngest an HTTP/2 connection may be when it is sent a
// single-phase GOAWAY; a younger one is sent it when it reaches that age. A
// client sends the requests it queued while connecting in a burst on a
// fresh connection: a single-phase GOAWAY in its first moments refuses
// them all, and grpc-go retries a refused call only once, on a fresh
// connection that a draining server would refuse again. Found by the
// grpc-go drain test in examples/grpc. The two-phase GOAWAY refuses no
// stream and does not wait.
const h2MinAge = 250 * time.Millisecond

// h2PingTimeout is how long a heads-up GOAWAY waits for its PING's ACK
// before the final GOAWAY goes anyway: a client that does not answer PINGs
// is not waited for. Go's client, curl, browsers and proxies answer within
// a round trip.
const h2PingTimeout = time.Second

// h2FinalGrace is how long the final GOAWAY waits after the PING's ACK. A
// client may have numbered a stream before it read the heads-up and write
// its HEADERS just after the ACK (Go's client numbers streams and writes
// frames from different goroutines); such a stream arrives within moments
// of the ACK, and the final GOAWAY counts it in.
const h2FinalGrace = 20 * time.Millisecond

// canceledContext makes a per-connection server's Shutdown start the
// GOAWAY (from net/http's own goroutine) and return at once.
var canceledContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// installH2 makes outer serve every HTTP/2 connection, over TLS and h2c,
// through a server of its own.
func (t *tracker) installH2(outer *http.Server, h2c bool) {
	if outer.TLSNextProto == nil {
		outer.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler), 2)
	}
	outer.TLSNextProto["h2"] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
		t.serveH2(hs, tc, h, protoH2)
	}
	if !h2c {
		return
	}
	// net/http hands h2c connections (preface read) to this key, in a
	// *tls.Conn whose NetConn has an UnencryptedNetConn method.
	outer.TLSNextProto["unencrypted_http2"] = func(hs *http.Server, tc *tls.Conn, h http.Handler) {
		u, ok := tc.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			if hs.ErrorLog != nil {
				hs.ErrorLog.Print("drainhttp: TLS conn unexpectedly found in unencrypted HTTP/2 handoff")
			}
			return
		}
		t.serveH2(hs, u.UnencryptedNetConn(), h, protoH2C)
	}
}

// h2Conn is one HTTP/2 connection's own server and its GOAWAY.
type h2Conn struct {
	t    *tracker
	c    *conn // nil if the connection is not tracked
	srv  *http.Server
	wire *h2Wire // nil: the server writes to the *tls.Conn itself (TLS on Go 1.26)

	mu      sync.Mutex
	armed   bool // a GOAWAY now cannot make the client fail a request
	wanted  bool // a GOAWAY was asked for
	started bool
	ended   bool // the final GOAWAY has been asked of srv, or the connection is gone
	timer   Timer
}

// serveH2 serves one HTTP/2 connection, nc as net/http's hooks see it, and
// returns when it has ended: the calling goroutine is the outer server's,
// which closes the connection when it returns. h is the handler net/http
// passed, which carries the connection's base context.
func (t *tracker) serveH2(outer *http.Server, nc net.Conn, h http.Handler, proto connProtocol) {
	hc := &h2Conn{t: t, c: t.lookup(nc)}
	hc.srv = &http.Server{
		Handler:                      h,
		DisableGeneralOptionsHandler: true, // h is the outer server's handler, which does it
		TLSConfig:                    t.h2TLS,
	}
	inheritH2Fields(hc.srv, outer)
	if t.noKeepAlives.Load() {
		hc.srv.SetKeepAlivesEnabled(false)
	}
	hc.serve(nc, h, proto)
}

// track records the connection as HTTP/2, once hc.wire is set and before
// the server starts: a GOAWAY asked for earlier is sent once it is safe.
func (hc *h2Conn) track(proto connProtocol) {
	if hc.c != nil {
		hc.c.setHTTP2(proto, hc)
	}
}

// state is the per-connection server's ConnState hook for the
// stream-driven active and idle transitions, which net/http's own HTTP/2
// server would report on the outer server: it passes them on with the
// outer server's view of the connection, nc. The connection's new and
// closed come from the outer server itself.
func (hc *h2Conn) state(nc net.Conn, state http.ConnState) {
	if hc.c != nil {
		hc.c.setState(state)
	}
	if hc.t.userState != nil {
		hc.t.userState(nc, state)
	}
}

// goAway asks for the connection's graceful end. It is sent as soon as it
// cannot make the client fail a request: when the client has acknowledged
// our SETTINGS (Go's client fails a request, unretried, if a GOAWAY
// arrives before it has seen them) or, without the wire, once the first
// stream has opened. Further calls do nothing.
func (hc *h2Conn) goAway() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.wanted = true
	hc.startLocked()
}

// arm records that a GOAWAY is now safe.
func (hc *h2Conn) arm() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.armed = true
	hc.startLocked()
}

// sawFirstStream is called when the connection's first stream opens:
// without the wire, that is when a GOAWAY becomes safe.
func (hc *h2Conn) sawFirstStream() {
	if hc.wire == nil {
		hc.arm()
	}
}

func (hc *h2Conn) startLocked() {
	if !hc.armed || !hc.wanted || hc.started || hc.ended {
		return
	}
	hc.started = true
	hc.t.goaways.Add(1)
	if hc.wire != nil {
		hc.wire.sendHeadsUp()
		hc.timer = hc.t.clock.AfterFunc(h2HeadsUpFence+h2PingTimeout, hc.finalGoAway)
		return
	}
	wait := time.Duration(0)
	if hc.c != nil {
		wait = hc.t.h2MinAge - hc.c.age(hc.t.clock.Now())
	}
	hc.timer = hc.t.clock.AfterFunc(max(wait, 0), hc.finalGoAway)
}

// pingAcked is called when the heads-up's PING comes back.
func (hc *h2Conn) pingAcked() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.ended {
		return
	}
	if hc.timer != nil {
		hc.timer.Stop()
	}
	hc.timer = hc.t.clock.AfterFunc(h2FinalGrace, hc.finalGoAway)
}

// finalGoAway has the connection's server send its GOAWAY, with the last
// stream it has seen, and close the connection once its streams are done.
func (hc *h2Conn) finalGoAway() {
	hc.mu.Lock()
	ended := hc.ended
	hc.ended = true
	hc.mu.Unlock()
	if !ended {
		hc.srv.Shutdown(canceledContext)
	}
}

// stop forgets the GOAWAY: the connection is gone.
func (hc *h2Conn) stop() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.ended = true
	if hc.timer != nil {
		hc.timer.Stop()
	}
}

// setHTTP2 records that c is now an HTTP/2 connection served by h2. A
// connection told to close before is sent its GOAWAY as soon as it can
// take one.
func (c *conn) setHTTP2(p connProtocol, h2 *h2Conn) {
	c.mu.Lock()
	if c.drainState() == closed {
		c.mu.Unlock()
		return
	}
	c.proto.Store(uint32(p))
	c.h2 = h2
	tld := c.drainState() == told
	c.mu.Unlock()
	if tld {
		h2.goAway()
	}
}
