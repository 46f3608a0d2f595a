package drainhttp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Timeout bounds every wait in these tests.
const h2Timeout = 10 * time.Second

type h2CtxKey struct{}

// h2TestConn records what the server reported for one HTTP/2 connection.
type h2TestConn struct {
	key    net.Conn
	proto  string
	goaway func()
	states []http.ConnState // from srv.ConnState, for key
}

// h2TestServer is one http.Server with installH2, serving h2 on a TLS
// listener and h2c on a plain one.
type h2TestServer struct {
	t       *testing.T
	srv     *http.Server
	tlsAddr string
	h2cAddr string
	roots   *x509.CertPool

	entered chan struct{} // a /block request has started
	release chan struct{} // closed: /block requests may finish

	mu      sync.Mutex
	conns   []*h2TestConn
	states  map[net.Conn][]http.ConnState
	ctxConn []net.Conn // ConnContext value each request saw
	changed chan struct{}
}

func startH2TestServer(t *testing.T, goawayOnShutdown bool) *h2TestServer {
	t.Helper()
	cert, roots := h2TestCert(t)
	s := &h2TestServer{
		t:       t,
		roots:   roots,
		entered: make(chan struct{}, 16),
		release: make(chan struct{}),
		states:  make(map[net.Conn][]http.ConnState),
		changed: make(chan struct{}),
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Handler:   http.HandlerFunc(s.serveHTTP),
		Protocols: &protos,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, h2CtxKey{}, c)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			s.update(func() { s.states[c] = append(s.states[c], st) })
		},
		ReadHeaderTimeout: h2Timeout,
	}
	installH2(s.srv, nil, func(key net.Conn, proto string, goaway func()) {
		s.update(func() { s.conns = append(s.conns, &h2TestConn{key: key, proto: proto, goaway: goaway}) })
	})
	if goawayOnShutdown {
		s.srv.RegisterOnShutdown(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, c := range s.conns {
				c.goaway()
			}
		})
	}

	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h2cLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tlsLn.Close()
		t.Fatal(err)
	}
	s.tlsAddr, s.h2cAddr = tlsLn.Addr().String(), h2cLn.Addr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.srv.ServeTLS(tlsLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.srv.Serve(h2cLn); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		s.srv.Close()
		wg.Wait()
	})
	return s
}

func (s *h2TestServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(h2CtxKey{}).(net.Conn)
	s.update(func() { s.ctxConn = append(s.ctxConn, c) })
	if got := r.Context().Value(http.ServerContextKey); got != s.srv {
		http.Error(w, "ServerContextKey is not the outer server", http.StatusInternalServerError)
		return
	}
	if r.URL.Path == "/block" {
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
	}
	io.WriteString(w, "ok")
}

// update runs f under s.mu and wakes waiters.
func (s *h2TestServer) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait blocks until cond (run under s.mu) holds, failing after h2Timeout.
func (s *h2TestServer) wait(what string, cond func() bool) {
	s.t.Helper()
	timer := time.NewTimer(h2Timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			s.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitConn waits for the n-th (0-based) HTTP/2 connection reported to onConn.
func (s *h2TestServer) waitConn(n int) *h2TestConn {
	s.t.Helper()
	var c *h2TestConn
	s.wait("onConn", func() bool {
		if len(s.conns) > n {
			c = s.conns[n]
		}
		return c != nil
	})
	return c
}

// waitState waits until key's ConnState history ends with st (or contains it, for closed).
func (s *h2TestServer) waitState(key net.Conn, st http.ConnState) {
	s.t.Helper()
	s.wait("ConnState "+st.String(), func() bool { return slices.Contains(s.states[key], st) })
}

func (s *h2TestServer) statesOf(key net.Conn) []http.ConnState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.states[key])
}

// client returns an HTTP client speaking h2 (TLS) or h2c (prior knowledge).
func (s *h2TestServer) client(proto string) (*http.Client, string) {
	tr := &http.Transport{ForceAttemptHTTP2: true}
	url := "https://" + s.tlsAddr
	if proto == "h2c" {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
		url = "http://" + s.h2cAddr
	} else {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.roots}
	}
	s.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: h2Timeout}, url
}

func h2Get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET %s: %s %q", url, resp.Status, body)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("GET %s: got %s, want HTTP/2", url, resp.Proto)
	}
}

func h2VerifyNone(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) }) // first registered, so runs last
}

var h2Protos = []string{"h2", "h2c"}

// TestH2ServesWithOuterHooks: requests are HTTP/2, the outer ConnState sees
// the connection's life with the key given to onConn, and the handler sees the
// outer ConnContext value (and ServerContextKey, checked in serveHTTP).
func TestH2ServesWithOuterHooks(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			h2VerifyNone(t)
			s := startH2TestServer(t, true)
			client, url := s.client(proto)

			h2Get(t, client, url+"/")
			c := s.waitConn(0)
			if c.proto != proto {
				t.Errorf("onConn proto = %q, want %q", c.proto, proto)
			}
			if _, isTLS := c.key.(*tls.Conn); isTLS != (proto == "h2") {
				t.Errorf("onConn key is %T", c.key)
			}
			h2Get(t, client, url+"/")
			s.mu.Lock()
			for i, got := range s.ctxConn {
				if got != c.key {
					t.Errorf("request %d: ConnContext conn = %v, want the onConn key %v", i, got, c.key)
				}
			}
			s.mu.Unlock()

			client.Transport.(*http.Transport).CloseIdleConnections()
			s.waitState(c.key, http.StateClosed)
			want := []http.ConnState{http.StateNew,
				http.StateActive, http.StateIdle, // preface
				http.StateActive, http.StateIdle, // request 1
				http.StateActive, http.StateIdle, // request 2
				http.StateClosed}
			if got := s.statesOf(c.key); !slices.Equal(got, want) {
				t.Errorf("ConnState for onConn key: got %v, want %v", got, want)
			}
			s.mu.Lock()
			if len(s.conns) != 1 || len(s.states) != 1 {
				t.Errorf("got %d onConn calls and ConnState for %d conns, want 1 and 1", len(s.conns), len(s.states))
			}
			s.mu.Unlock()
			c.goaway() // after the connection ended: a no-op
		})
	}
}

// rawH2 is a hand-driven HTTP/2 client connection.
type rawH2 struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func (s *h2TestServer) dialRaw(proto string) *rawH2 {
	s.t.Helper()
	addr := s.h2cAddr
	if proto == "h2" {
		addr = s.tlsAddr
	}
	return dialRawH2(s.t, proto, addr, s.roots)
}

// dialRawH2 opens an HTTP/2 connection to addr ("h2" over TLS, "h2c" with
// prior knowledge) and sends the preface and SETTINGS.
func dialRawH2(t *testing.T, proto, addr string, roots *x509.CertPool) *rawH2 {
	t.Helper()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: h2Timeout}
	if proto == "h2" {
		var tc *tls.Conn
		tc, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}})
		if err == nil && tc.ConnectionState().NegotiatedProtocol != "h2" {
			tc.Close()
			t.Fatalf("ALPN negotiated %q, want h2", tc.ConnectionState().NegotiatedProtocol)
		}
		conn = tc
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(h2Timeout))
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

func (r *rawH2) request(streamID uint32, path string) {
	r.t.Helper()
	r.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "drainhttp.test"}, {":path", path}} {
		r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	err := r.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: streamID, BlockFragment: r.hbuf.Bytes(), EndStream: true, EndHeaders: true,
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// next reads frames, answering SETTINGS and PING, until want returns true.
func (r *rawH2) next(what string, want func(http2.Frame) bool) http2.Frame {
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
			if !f.IsAck() {
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

// response reads the whole response on streamID and checks it is 200 "ok".
func (r *rawH2) response(streamID uint32) {
	r.t.Helper()
	var status string
	var body []byte
	r.next("response", func(f http2.Frame) bool {
		if f.Header().StreamID != streamID {
			return false
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status = f.PseudoValue("status")
			return f.StreamEnded()
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			return f.StreamEnded()
		case *http2.RSTStreamFrame:
			r.t.Fatalf("stream %d reset: %v", streamID, f.ErrCode)
		}
		return false
	})
	if status != "200" || string(body) != "ok" {
		r.t.Fatalf("stream %d: status %q body %q, want 200 \"ok\"", streamID, status, body)
	}
}

// goaway reads until a GOAWAY frame and checks it is graceful.
func (r *rawH2) goaway(lastStreamID uint32) {
	r.t.Helper()
	var ga *http2.GoAwayFrame
	r.next("GOAWAY (the out-of-band GOAWAY of h2conn.go is broken on this toolchain)", func(f http2.Frame) bool {
		ga, _ = f.(*http2.GoAwayFrame)
		return ga != nil
	})
	if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != lastStreamID {
		r.t.Fatalf("GOAWAY: code %v last stream %d, want NO_ERROR and %d", ga.ErrCode, ga.LastStreamID, lastStreamID)
	}
}

// closed reads until the server closes the connection.
func (r *rawH2) closed() {
	r.t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		if err == nil {
			if _, isData := f.(*http2.DataFrame); isData || f.Header().StreamID != 0 {
				r.t.Fatalf("after GOAWAY: unexpected %v", f)
			}
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset") {
			return
		}
		r.t.Fatalf("waiting for the server to close the connection: %v", err)
	}
}

// TestH2OutOfBandGoaway: goaway() for an idle connection sends
// GOAWAY(NO_ERROR) on it, from outside any request, and the server then
// closes it. If this fails, installH2 no longer reaches the connection.
func TestH2OutOfBandGoaway(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			h2VerifyNone(t)
			s := startH2TestServer(t, false)
			r := s.dialRaw(proto)
			r.request(1, "/")
			r.response(1)
			c := s.waitConn(0)
			if c.proto != proto {
				t.Errorf("onConn proto = %q, want %q", c.proto, proto)
			}

			c.goaway()
			c.goaway() // twice is fine
			r.goaway(1)
			r.closed()
			s.waitState(c.key, http.StateClosed)
			c.goaway() // after the end: no-op
		})
	}
}

// TestH2GoawayGraceful: a request in flight when goaway() is called
// completes, after the GOAWAY.
func TestH2GoawayGraceful(t *testing.T) {
	for _, proto := range h2Protos {
		t.Run(proto, func(t *testing.T) {
			h2VerifyNone(t)
			s := startH2TestServer(t, false)
			r := s.dialRaw(proto)
			r.request(1, "/")
			r.response(1)
			r.request(3, "/block")
			select {
			case <-s.entered:
			case <-time.After(h2Timeout):
				t.Fatal("the /block request never reached the handler")
			}
			c := s.waitConn(0)
			c.goaway()
			r.goaway(3)
			close(s.release)
			r.response(3)
			r.closed()
			s.waitState(c.key, http.StateClosed)
		})
	}
}

// TestH2ShutdownWithIdleConns: with RegisterOnShutdown calling every goaway,
// Shutdown returns promptly with idle h2 and h2c connections open; without it,
// Shutdown waits for its context (the trap installH2 documents).
func TestH2ShutdownWithIdleConns(t *testing.T) {
	for _, hook := range []bool{true, false} {
		name := map[bool]string{true: "goaway_on_shutdown", false: "no_hook"}[hook]
		t.Run(name, func(t *testing.T) {
			h2VerifyNone(t)
			s := startH2TestServer(t, hook)
			for i, proto := range h2Protos {
				client, url := s.client(proto)
				h2Get(t, client, url+"/")
				c := s.waitConn(i)
				// Idle: preface pair plus the request's pair.
				s.wait(proto+" conn idle", func() bool {
					return slices.Equal(s.states[c.key], []http.ConnState{http.StateNew,
						http.StateActive, http.StateIdle, http.StateActive, http.StateIdle})
				})
			}

			timeout := h2Timeout
			if !hook {
				timeout = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			err := s.srv.Shutdown(ctx)
			elapsed := time.Since(start)
			if hook {
				// GOAWAY closes an idle connection at once (the client
				// hangs up) or after the server's 1 s goAwayTimeout.
				if err != nil || elapsed > 5*time.Second {
					t.Fatalf("Shutdown = %v after %v, want nil within 5s", err, elapsed)
				}
				for i := range h2Protos {
					s.waitState(s.waitConn(i).key, http.StateClosed)
				}
			} else if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown without the goaway hook = %v, want %v (did net/http keep its own HTTP/2 shutdown hook?)",
					err, context.DeadlineExceeded)
			}
		})
	}
}

// h2TestCert makes a self-signed certificate for 127.0.0.1.
func h2TestCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "drainhttp test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}
