package drainhttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Protos are the HTTP/2 variants: h2c, h2 through ServeTLS, and h2
// through Serve(tls.NewListener(...)).
var h2Protos = []string{"h2c", "h2", "h2-tlslistener"}

// twoPhase reports whether HTTP/2 connections of proto get the two-phase
// GOAWAY on this toolchain (see servesAnyTLSConn).
func twoPhase(proto string) bool { return proto == "h2c" || servesAnyTLSConn }

// rawH2 is an HTTP/2 client that speaks frames, to see exactly what the
// server sends.
type rawH2 struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

// dialRaw opens an HTTP/2 connection for proto and sends the preface and
// SETTINGS.
func (ts *testServer) dialRaw(proto string) *rawH2 {
	t := ts.t
	t.Helper()
	var conn net.Conn
	var err error
	switch proto {
	case "h2c":
		conn, err = net.Dial("tcp", ts.addr)
	default:
		addr := ts.tlsAddr
		if proto == "h2-tlslistener" {
			addr = ts.tlsLAdr
		}
		var tc *tls.Conn
		tc, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"h2"}})
		if err == nil && tc.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("ALPN chose %q, want h2", tc.ConnectionState().NegotiatedProtocol)
		}
		conn = tc
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(testTimeout))
	r := &rawH2{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rawH2) request(streamID uint32, method, path string) {
	r.t.Helper()
	r.hbuf.Reset()
	for _, f := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "drainhttp.test"}, {":path", path}} {
		r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: streamID, BlockFragment: r.hbuf.Bytes(), EndStream: true, EndHeaders: true,
	}); err != nil {
		r.t.Fatal(err)
	}
}

// next reads frames until want returns true; it acknowledges SETTINGS,
// and PINGs when ackPings.
func (r *rawH2) next(what string, ackPings bool, want func(http2.Frame) bool) http2.Frame {
	r.t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", what, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := r.fr.WriteSettingsAck(); err != nil {
					r.t.Fatal(err)
				}
			}
		case *http2.PingFrame:
			if ackPings && !f.IsAck() {
				if err := r.fr.WritePing(true, f.Data); err != nil {
					r.t.Fatal(err)
				}
			}
		}
		if want(f) {
			return f
		}
	}
}

// response reads the response on streamID to its end and returns its
// status and body.
func (r *rawH2) response(streamID uint32) (status, body string) {
	r.t.Helper()
	r.next(fmt.Sprintf("the response on stream %d", streamID), true, func(f http2.Frame) bool {
		if f.Header().StreamID != streamID {
			return false
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status = f.PseudoValue("status")
			return f.StreamEnded()
		case *http2.DataFrame:
			body += string(f.Data())
			return f.StreamEnded()
		case *http2.RSTStreamFrame:
			r.t.Fatalf("stream %d reset: %v", streamID, f.ErrCode)
		}
		return false
	})
	return status, body
}

// closed waits until the server closes the connection.
func (r *rawH2) closed() {
	r.t.Helper()
	for {
		if _, err := r.fr.ReadFrame(); err != nil {
			return
		}
	}
}

func isGoAway(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }

// TestH2_TwoPhaseGoAwayRefusesNoStream reads, with a Framer, the two-phase
// GOAWAY (RFC 9113 section 6.8): first GOAWAY(2^31-1, NO_ERROR) and a
// PING; a stream the client opens before it has seen them (here, after)
// is served; once the PING is acknowledged, the final GOAWAY carries that
// stream as the last one. On Go 1.26, TLS connections get the single-phase
// GOAWAY.
func TestH2_TwoPhaseGoAwayRefusesNoStream(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			if !twoPhase(proto) {
				t.Skip("Go 1.26 serves HTTP/2 over TLS only on a *tls.Conn: single-phase GOAWAY")
			}
			s := &Server{Handler: okHandler()}
			ts := startServer(t, s)
			r := ts.dialRaw(proto)
			r.request(1, "GET", "/")
			if st, body := r.response(1); st != "200" || body != "ok" {
				t.Fatalf("stream 1: %s %q", st, body)
			}
			go s.DrainNow(context.Background())
			first := r.next("the heads-up GOAWAY", false, isGoAway).(*http2.GoAwayFrame)
			if first.LastStreamID != 1<<31-1 || first.ErrCode != http2.ErrCodeNo {
				t.Fatalf("first GOAWAY: last stream %d, %v; want 2147483647, NO_ERROR", first.LastStreamID, first.ErrCode)
			}
			ping := r.next("the heads-up PING", false, func(f http2.Frame) bool {
				p, ok := f.(*http2.PingFrame)
				return ok && !p.IsAck()
			}).(*http2.PingFrame)
			// A stream the client opened before it read the GOAWAY.
			r.request(3, "GET", "/")
			if err := r.fr.WritePing(true, ping.Data); err != nil {
				t.Fatal(err)
			}
			var final *http2.GoAwayFrame
			var status string
			r.next("stream 3's response and the final GOAWAY", false, func(f http2.Frame) bool {
				switch f := f.(type) {
				case *http2.GoAwayFrame:
					final = f
				case *http2.MetaHeadersFrame:
					if f.StreamID == 3 {
						status = f.PseudoValue("status")
					}
				case *http2.RSTStreamFrame:
					t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
				}
				return final != nil && status != ""
			})
			if final.LastStreamID != 3 || final.ErrCode != http2.ErrCodeNo || status != "200" {
				t.Fatalf("final GOAWAY last stream %d (%v), stream 3 status %q; want 3, NO_ERROR, 200", final.LastStreamID, final.ErrCode, status)
			}
			r.closed()
		})
	}
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
}

// TestH2_IdleConnectionGetsGoAwayFromOutsideAnyRequest: an HTTP/2
// connection that sends no request during the drain still gets its GOAWAY,
// from outside any request (net/http has no API for that), and closes
// well within the drain's bound.
func TestH2_IdleConnectionGetsGoAwayFromOutsideAnyRequest(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			s := &Server{Handler: okHandler(), DrainTime: 400 * time.Millisecond, DrainTimeout: 3 * time.Second}
			ts := startServer(t, s)
			r := ts.dialRaw(proto)
			r.request(1, "GET", "/")
			r.response(1)
			start := time.Now()
			errc := ts.drain()
			g := r.next("a GOAWAY", true, func(f http2.Frame) bool {
				g, ok := f.(*http2.GoAwayFrame)
				return ok && g.LastStreamID < 1<<31-1
			}).(*http2.GoAwayFrame)
			if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
				t.Errorf("GOAWAY last stream %d, %v; want 1, NO_ERROR", g.LastStreamID, g.ErrCode)
			}
			r.closed()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > s.DrainTime+s.DrainTimeout {
				t.Errorf("drain took %v", d)
			}
			if st := s.Stats(); st.GoAways != 1 || st.Forced != 0 || st.Drained["proactive"] != 1 {
				t.Errorf("stats: goaways %d, forced %d, drained %v; want 1 GOAWAY, 0 forced, 1 proactive", st.GoAways, st.Forced, st.Drained)
			}
		})
	}
}

// TestH2_InFlightRequestCompletesAfterGoAway: a slow request in flight when
// its connection gets its GOAWAY completes, then the connection closes.
func TestH2_InFlightRequestCompletesAfterGoAway(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			release := make(chan struct{})
			s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-release
				io.WriteString(w, "ok")
			})}
			ts := startServer(t, s)
			c, url := ts.client(proto)
			body := make(chan string, 1)
			go func() { body <- get(t, c, url) }()
			waitFor(t, "the request to be in flight", func() bool { return s.Stats().Open[protoOf(proto)]["active"] == 1 })
			errc := ts.drain()
			waitFor(t, "the GOAWAY", func() bool { return s.Stats().GoAways == 1 })
			close(release)
			if b := <-body; b != "ok" {
				t.Fatalf("body %q", b)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Forced != 0 {
				t.Errorf("forced %d, want 0", st.Forced)
			}
		})
	}
}

func protoOf(proto string) string {
	switch proto {
	case "h2c":
		return "h2c"
	case "h2", "h2-tlslistener":
		return "h2"
	}
	return "http/1.1"
}

// onlyReader hides a body's type, so that the client cannot replay it:
// http.NewRequest sets no GetBody for it.
type onlyReader struct{ io.Reader }

// TestH2_UnreplayablePOSTsOnOneConnectionAllSucceedThroughItsGoAway sends
// POSTs whose bodies cannot be replayed, 8 at a time on one HTTP/2
// connection with 10 ms of latency each way, while the drain sends that
// connection its GOAWAY: with net/http's single-phase GOAWAY the POSTs in
// flight past its last stream fail; with the two-phase one, none does.
func TestH2_UnreplayablePOSTsOnOneConnectionAllSucceedThroughItsGoAway(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			if !twoPhase(proto) {
				t.Skip("Go 1.26: single-phase GOAWAY over TLS (see TestH2_TwoPhaseGoAwayRefusesNoStream)")
			}
			s := &Server{Handler: okHandler(), DrainTime: 300 * time.Millisecond}
			ts := startServer(t, s)
			tr, url := ts.transport(proto)
			tr.DialContext = latencyDialer(10 * time.Millisecond)
			tr.DialTLSContext = nil
			if proto != "h2c" {
				dial := latencyDialer(10 * time.Millisecond)
				tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := dial(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					tc := tls.Client(c, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"h2"}, ServerName: "127.0.0.1"})
					return tc, tc.HandshakeContext(ctx)
				}
			}
			c := &http.Client{Transport: tr, Timeout: testTimeout}
			var ok, failed, refused atomic.Int64
			var errs sync.Map
			stop := make(chan struct{})
			// Stop sending once the listeners close: a request after that
			// is refused, never sent, and any client may retry it.
			s.OnPhase(func(pc PhaseChange) {
				if pc.Phase == PhaseClosingListeners {
					close(stop)
				}
			})
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						req, _ := http.NewRequest("POST", url, onlyReader{strings.NewReader(strings.Repeat("x", 1000))})
						if req.GetBody != nil {
							panic("replayable")
						}
						resp, err := c.Do(req)
						if err != nil {
							if errors.Is(err, syscall.ECONNREFUSED) {
								refused.Add(1)
							} else {
								failed.Add(1)
								errs.Store(err.Error(), true)
							}
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							failed.Add(1)
							errs.Store(resp.Status, true)
							continue
						}
						ok.Add(1)
					}
				})
			}
			waitFor(t, "POSTs to flow", func() bool { return ok.Load() > 50 })
			if err := s.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			st := s.Stats()
			t.Logf("%d POSTs: %d ok, %d failed, %d refused after the listeners closed; %d GOAWAYs, %d connections",
				ok.Load()+failed.Load()+refused.Load(), ok.Load(), failed.Load(), refused.Load(), st.GoAways, st.Accepted)
			if failed.Load() > 0 {
				errs.Range(func(k, _ any) bool { t.Errorf("failed: %v", k); return true })
			}
			if st.GoAways == 0 {
				t.Error("no GOAWAY was sent")
			}
		})
	}
}

// TestH2_ConnectStreamGetsGoAwayLikeAnyOther: on HTTP/2 a CONNECT (and an
// extended CONNECT, RFC 8441 WebSockets) is one stream among others; its
// connection is sent a GOAWAY as usual, not left for its deadline as an
// HTTP/1.1 upgrade is.
func TestH2_ConnectStreamGetsGoAwayLikeAnyOther(t *testing.T) {
	// A decision that closes the CONNECT's connection (no drain runs):
	// on HTTP/1.1 it would get no Connection: close, on HTTP/2 a GOAWAY.
	var closeIt atomic.Bool
	s := &Server{Handler: Middleware(DecisionFunc(closeIt.Load))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	})), DrainTimeout: time.Minute}
	ts := startServer(t, s)
	r := ts.dialRaw("h2c")
	r.request(1, "GET", "/") // the client has seen our SETTINGS: a GOAWAY is safe
	r.response(1)
	// Older than h2MinAge, so that only the CONNECT's decision can send the
	// GOAWAY: at ea4b9ce a young connection got one from a timer, which
	// hid that a CONNECT got none.
	time.Sleep(h2MinAge)
	closeIt.Store(true)
	r.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	r.hbuf.Reset()
	for _, f := range [][2]string{{":method", "CONNECT"}, {":authority", "example.test:443"}} {
		r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.hbuf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	g := r.next("the GOAWAY", true, func(f http2.Frame) bool {
		g, ok := f.(*http2.GoAwayFrame)
		return ok && g.LastStreamID < 1<<31-1
	}).(*http2.GoAwayFrame)
	if g.LastStreamID != 3 {
		t.Errorf("GOAWAY last stream %d, want 3", g.LastStreamID)
	}
}

// TestH2_ShutdownReachesEveryConnection: Shutdown sends every HTTP/2
// connection its GOAWAY (net/http's own HTTP/2 server does, and ours are
// per connection) and returns once they have closed, instead of waiting
// for its context.
func TestH2_ShutdownReachesEveryConnection(t *testing.T) {
	s := &Server{Handler: okHandler()}
	ts := startServer(t, s)
	for _, proto := range h2Protos {
		c, url := ts.client(proto)
		get(t, c, url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if st := s.Stats(); st.GoAways != 3 || st.OpenTotal != 0 {
		t.Errorf("goaways %d (want 3), open %d (want 0)", st.GoAways, st.OpenTotal)
	}
}

// TestH2_ConnectionNeverAckingSettingsGetsNoGoAway: Go's client fails a
// request, without retrying it, if a GOAWAY arrives before it has seen the
// server's SETTINGS; a connection that has not acknowledged them is closed
// at its deadline instead.
func TestH2_ConnectionNeverAckingSettingsGetsNoGoAway(t *testing.T) {
	s := &Server{Handler: okHandler(), DrainTimeout: 300 * time.Millisecond}
	ts := startServer(t, s)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	waitFor(t, "the connection to become h2c", func() bool { return s.Stats().Open["h2c"]["idle"]+s.Stats().Open["h2c"]["active"] == 1 })
	errc := ts.drain()
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if isGoAway(f) {
			t.Fatalf("got %v before acknowledging SETTINGS", f.Header())
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.GoAways != 0 {
		t.Errorf("goaways %d, want 0", st.GoAways)
	}
}

// TestH2_ClientThatKeepsSendingGetsAtMostTwoGoAwaysPerDrain: an HTTP/2
// client that sends request after request through a drain gets a GOAWAY
// on the connection it had, at its proactive turn, and one more, at the
// window's end, on the connection it opened then: not one per reconnect.
// Every request succeeds until the listeners close; its next connection
// is then refused, not served a third GOAWAY.
func TestH2_ClientThatKeepsSendingGetsAtMostTwoGoAwaysPerDrain(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			s := &Server{Handler: okHandler(), DrainTime: 1500 * time.Millisecond}
			ts := startServer(t, s)
			stop := make(chan struct{})
			c, url := ts.client(proto)
			get(t, c, url)
			done := make(chan int)
			go func() {
				n := 0
				defer func() { done <- n }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := c.Get(url)
					if errors.Is(err, syscall.ECONNREFUSED) {
						return // the listeners have closed
					}
					if err != nil {
						t.Errorf("request %d: %v", n, err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					n++
					time.Sleep(5 * time.Millisecond) // bounds the count, not the outcome
				}
			}()
			if err := <-ts.drain(); err != nil {
				t.Fatal(err)
			}
			close(stop)
			n := <-done
			st := s.Stats()
			t.Logf("%d requests through the drain; %d accepted, %d GOAWAYs, drained %v", n, st.Accepted, st.GoAways, st.Drained)
			if st.GoAways < 1 || st.GoAways > 2 {
				t.Errorf("%d GOAWAYs to one client in one drain, want 1 or 2", st.GoAways)
			}
			if st.Drained["proactive"] != 1 || st.Forced != 0 {
				t.Errorf("drained %v, forced %d; want the first connection ended at its proactive turn, none forced", st.Drained, st.Forced)
			}
		})
	}
}
