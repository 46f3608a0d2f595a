package drainhttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// protoHandler answers with the request's protocol and whether it came over
// TLS.
var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil)
})

func wantProto(proto string) string {
	switch proto {
	case "http/1.1":
		return "HTTP/1.1 tls=false"
	case "h2c":
		return "HTTP/2.0 tls=false"
	case "h2", "h2-tlslistener":
		return "HTTP/2.0 tls=true"
	default:
		return "HTTP/1.1 tls=true"
	}
}

func TestServer_ServesEveryProtocolAsNetHTTPDoes(t *testing.T) {
	ts := startServer(t, &Server{Handler: protoHandler})
	for _, proto := range testProtos {
		c, url := ts.client(proto)
		if got, want := get(t, c, url), wantProto(proto); got != want {
			t.Errorf("%s: got %q, want %q", proto, got, want)
		}
	}
}

// connEvents records what ConnState and ConnContext see, in order.
type connEvents struct {
	mu     sync.Mutex
	states []string
	ctxs   []string
}

func (e *connEvents) hooks(s *Server) {
	s.ConnState = func(c net.Conn, st http.ConnState) {
		e.mu.Lock()
		e.states = append(e.states, fmt.Sprintf("%T:%s", c, st))
		e.mu.Unlock()
	}
	s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		e.mu.Lock()
		e.ctxs = append(e.ctxs, fmt.Sprintf("%T", c))
		e.mu.Unlock()
		return ctx
	}
}

func (e *connEvents) get() ([]string, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.states), slices.Clone(e.ctxs)
}

// TestServer_HooksSeeExactlyWhatNetHTTPShows runs the same client sequence
// (two requests, then the client closes) against a plain http.Server and a
// Server, on every protocol, and compares what the user's ConnState and
// ConnContext saw: the same connection types, the same transitions.
func TestServer_HooksSeeExactlyWhatNetHTTPShows(t *testing.T) {
	for _, proto := range testProtos {
		t.Run(proto, func(t *testing.T) {
			var plain, ours connEvents
			ps := &Server{}
			plain.hooks(ps)
			pts := startPlainServer(t, &http.Server{Handler: protoHandler, ConnState: ps.ConnState, ConnContext: ps.ConnContext})

			ourS := &Server{Handler: protoHandler}
			ours.hooks(ourS)
			ots := startServer(t, ourS)

			for _, run := range []struct {
				ts *testServer
				ev *connEvents
			}{{pts, &plain}, {ots, &ours}} {
				tr, url := run.ts.transport(proto)
				c := &http.Client{Transport: tr}
				get(t, c, url)
				get(t, c, url)
				tr.CloseIdleConnections()
				waitFor(t, "the connection to close", func() bool {
					st, _ := run.ev.get()
					return len(st) > 0 && strings.HasSuffix(st[len(st)-1], ":closed")
				})
			}
			ps1, pc1 := plain.get()
			os1, oc1 := ours.get()
			if !slices.Equal(ps1, os1) {
				t.Errorf("ConnState:\nnet/http:  %v\ndrainhttp: %v", ps1, os1)
			}
			if !slices.Equal(pc1, oc1) {
				t.Errorf("ConnContext:\nnet/http:  %v\ndrainhttp: %v", pc1, oc1)
			}
		})
	}
}

// startPlainServer serves hs, a plain http.Server, as startServer serves
// a Server: on three listeners of its own, with every protocol, until the
// test ends.
func startPlainServer(t *testing.T, hs *http.Server) *testServer {
	t.Helper()
	cert, roots := testCert(t)
	hs.Protocols = allProtocols()
	hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	pts := &testServer{t: t, roots: roots, cert: cert}
	l1, l2, l3 := listen(t), listen(t), listen(t)
	pts.addr, pts.tlsAddr, pts.tlsLAdr = l1.Addr().String(), l2.Addr().String(), l3.Addr().String()
	go hs.Serve(l1)
	go hs.ServeTLS(l2, "", "")
	go hs.Serve(tls.NewListener(l3, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}))
	t.Cleanup(func() { hs.Close() })
	return pts
}

type ctxKey string

// contextHandler answers with what the request's context holds: the
// values BaseContext and ConnContext put there, the local address (as the
// address the client dialed), the server key's type, and whether the
// context is live.
var contextHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	la, _ := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	srv, _ := ctx.Value(http.ServerContextKey).(*http.Server)
	fmt.Fprintf(w, "base=%v conn=%v local=%T:%v server=%v err=%v tls=%v remote=%v",
		ctx.Value(ctxKey("base")), ctx.Value(ctxKey("conn")), la, la != nil && la.String() == r.Host,
		srv != nil, ctx.Err(), r.TLS != nil, r.RemoteAddr != "")
})

// contextHooks sets BaseContext and ConnContext hooks that put a value
// each in the connection's context.
func contextHooks(base *func(net.Listener) context.Context, conn *func(context.Context, net.Conn) context.Context) {
	*base = func(net.Listener) context.Context {
		return context.WithValue(context.Background(), ctxKey("base"), "b")
	}
	*conn = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, ctxKey("conn"), fmt.Sprintf("%T", c))
	}
}

// TestServer_RequestContextHoldsWhatNetHTTPPutsThere: on every protocol, a
// request's context holds what a plain http.Server's does: the values of
// BaseContext and ConnContext, the connection's local address, a server
// (for HTTP/2, the connection's own: see Server), and it is live.
func TestServer_RequestContextHoldsWhatNetHTTPPutsThere(t *testing.T) {
	hs := &http.Server{Handler: contextHandler}
	contextHooks(&hs.BaseContext, &hs.ConnContext)
	pts := startPlainServer(t, hs)
	s := &Server{Handler: contextHandler}
	contextHooks(&s.BaseContext, &s.ConnContext)
	ts := startServer(t, s)
	for _, proto := range testProtos {
		pc, purl := pts.client(proto)
		c, url := ts.client(proto)
		want, got := get(t, pc, purl), get(t, c, url)
		if got != want || !strings.Contains(want, "base=b conn=*") {
			t.Errorf("%s:\nnet/http:  %s\ndrainhttp: %s", proto, want, got)
		}
	}
}

// TestServer_TLSListenerKeepsRequestTLSAndHTTP2 is how autocert, certmagic
// and tls.Listen users serve: Serve(tls.NewListener(...)) must set r.TLS,
// negotiate h2 and http/1.1 by ALPN, and with mutual TLS give the handler
// the client's certificate, on both protocols.
func TestServer_TLSListenerKeepsRequestTLSAndHTTP2(t *testing.T) {
	cert, roots := testCert(t)
	clientCert, clientRoots := testCert(t)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "no r.TLS", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s alpn=%s peers=%d cn=%s", r.Proto, r.TLS.NegotiatedProtocol,
			len(r.TLS.PeerCertificates), r.TLS.PeerCertificates[0].Subject.CommonName)
	})}
	l := listen(t)
	tl := tls.NewListener(l, &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientRoots,
	})
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(tl) }()
	defer func() {
		s.Close()
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	for _, h2 := range []bool{true, false} {
		var p http.Protocols
		p.SetHTTP2(h2)
		p.SetHTTP1(!h2)
		tr := &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}}}
		if !h2 {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		want := "HTTP/1.1 alpn=http/1.1 peers=1 cn=drainhttp test"
		if h2 {
			want = "HTTP/2.0 alpn=h2 peers=1 cn=drainhttp test"
		}
		if got := get(t, &http.Client{Transport: tr}, "https://"+l.Addr().String()); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		tr.CloseIdleConnections()
	}
}

// TestServer_HijackGetsTheListenersConnAndStaysTracked: a handler that
// hijacks gets the listener's own type (a *net.TCPConn here, with its
// syscall.Conn), the connection stays tracked while hijacked, its closing
// by the handler is noticed, and a drain closes one left open at its
// deadline.
func TestServer_HijackGetsTheListenersConnAndStaysTracked(t *testing.T) {
	type hijacked struct {
		c   net.Conn
		err error
	}
	got := make(chan hijacked, 2)
	s := &Server{DrainTimeout: 200 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		got <- hijacked{c, err}
	})}
	ts := startServer(t, s)
	hijack := func() (client, server net.Conn) {
		client, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		h := <-got
		if h.err != nil {
			t.Fatal(h.err)
		}
		if _, ok := h.c.(*net.TCPConn); !ok {
			t.Fatalf("Hijack returned a %T, want the listener's *net.TCPConn", h.c)
		}
		if _, ok := h.c.(syscall.Conn); !ok {
			t.Fatalf("the hijacked %T has no syscall.Conn", h.c)
		}
		return client, h.c
	}
	hijackedOpen := func() int64 { return s.Stats().Open["http/1.1"]["hijacked"] }

	client1, server1 := hijack()
	defer client1.Close()
	if n := hijackedOpen(); n != 1 {
		t.Fatalf("%d hijacked connections open, want 1", n)
	}
	server1.Close() // the handler is done with it
	waitFor(t, "the hijacked connection's close to be noticed", func() bool { return hijackedOpen() == 0 })

	client2, _ := hijack()
	defer client2.Close()
	start := time.Now()
	if err := <-ts.drain(); err != nil {
		t.Fatal(err)
	}
	client2.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := client2.Read(make([]byte, 1)); err == nil {
		t.Fatal("the hijacked connection is still open after the drain")
	}
	if d := time.Since(start); d > s.DrainTimeout+2*time.Second {
		t.Errorf("the drain took %v", d)
	}
	if st := s.Stats(); st.Forced != 1 || st.OpenTotal != 0 {
		t.Errorf("after the drain: forced %d (want 1), open %d (want 0)", st.Forced, st.OpenTotal)
	}
}

// TestServer_HasEveryHTTPServerField fails on a Go release whose
// http.Server has a field that Server lacks.
func TestServer_HasEveryHTTPServerField(t *testing.T) {
	ours := reflect.TypeFor[Server]()
	for f := range reflect.TypeFor[http.Server]().Fields() {
		if !f.IsExported() {
			continue
		}
		g, ok := ours.FieldByName(f.Name)
		switch {
		case !ok:
			t.Errorf("Server lacks http.Server's field %s %v", f.Name, f.Type)
		case g.Type != f.Type:
			t.Errorf("Server.%s is a %v, http.Server's a %v", f.Name, g.Type, f.Type)
		}
	}
}

// TestServer_EveryHTTPServerFieldReachesTheConnections sets every field
// Server mirrors to a distinctive value and checks that the server that
// serves HTTP/1.1 connections, and the one that serves each HTTP/2
// connection, have it (hooks and handler are drainhttp's own, chaining the
// user's, and checked by the other tests).
func TestServer_EveryHTTPServerFieldReachesTheConnections(t *testing.T) {
	s := &Server{Handler: protoHandler}
	sv := reflect.ValueOf(s).Elem()
	managed := map[string]bool{"Handler": true, "ConnState": true, "ConnContext": true, "BaseContext": true,
		"TLSNextProto": true, "ErrorLog": true, "Protocols": true, "TLSConfig": true}
	for _, p := range mirroredFields() {
		f := sv.Type().Field(p.ours)
		if managed[f.Name] {
			continue
		}
		v := sv.Field(p.ours)
		switch v.Kind() {
		case reflect.Int64:
			v.SetInt(int64(time.Hour) + int64(p.ours)) // timeouts: long enough not to matter
		case reflect.Int:
			v.SetInt(1<<20 + int64(p.ours))
		case reflect.Bool:
			v.SetBool(f.Name != "DisableGeneralOptionsHandler")
		case reflect.String:
			v.SetString("127.0.0.1:0")
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
		default:
			t.Fatalf("no test value for the %v field %s", v.Kind(), f.Name)
		}
	}
	var h2 *http.Server
	s.ConnState = func(c net.Conn, st http.ConnState) {}
	ts := startServer(t, s)
	for _, proto := range []string{"h2c", "h2"} {
		c, url := ts.client(proto)
		get(t, c, url)
	}
	for _, c := range s.tracker.snapshot() {
		c.mu.Lock()
		if c.h2 != nil {
			h2 = c.h2.srv
		}
		c.mu.Unlock()
	}
	if h2 == nil {
		t.Fatal("no HTTP/2 connection found")
	}
	outer := reflect.ValueOf(s.srv).Elem()
	inner := reflect.ValueOf(h2).Elem()
	for _, p := range mirroredFields() {
		name := sv.Type().Field(p.ours).Name
		if managed[name] {
			continue
		}
		want := sv.Field(p.ours)
		if got := outer.Field(p.theirs); !sameValue(got, want) {
			t.Errorf("outer server's %s = %v, want %v", name, got, want)
		}
		if notInherited[name] {
			continue
		}
		if got := inner.Field(p.theirs); !sameValue(got, want) {
			t.Errorf("HTTP/2 connection's server's %s = %v, want %v", name, got, want)
		}
	}
}

// alpnOffered dials addr with TLS, offering h2 and http/1.1, and returns
// what the server chose.
func alpnOffered(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().NegotiatedProtocol
}

// TestServer_DisablingHTTP2WorksAsInNetHTTP: a non-nil empty TLSNextProto,
// and GODEBUG=http2server=0, turn HTTP/2 off exactly as they do for
// http.Server: ServeTLS offers only http/1.1.
func TestServer_DisablingHTTP2WorksAsInNetHTTP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		godbg  string
		config func(s *Server)
	}{
		{"default", "", func(*Server) {}},
		{"empty TLSNextProto", "", func(s *Server) {
			s.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}},
		{"GODEBUG=http2server=0", "http2server=0", func(*Server) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.godbg != "" {
				t.Setenv("GODEBUG", tc.godbg)
			}
			cert, roots := testCert(t)
			hs := &http.Server{Handler: protoHandler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
			s := &Server{Handler: protoHandler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
			tc.config(s)
			hs.TLSNextProto = s.TLSNextProto
			l1, l2 := listen(t), listen(t)
			go hs.ServeTLS(l1, "", "")
			defer hs.Close()
			errc := make(chan error, 1)
			go func() { errc <- s.ServeTLS(l2, "", "") }()
			defer func() { s.Close(); <-errc }()
			want, got := alpnOffered(t, l1.Addr().String(), roots), alpnOffered(t, l2.Addr().String(), roots)
			if got != want {
				t.Errorf("ALPN chose %q, net/http %q", got, want)
			}
			if (tc.name == "default") != (got == "h2") {
				t.Errorf("ALPN chose %q", got)
			}
		})
	}
}

// TestServer_ReportsAFieldChangedAfterFirstUse: a Handler set after
// Manager() used to be ignored silently.
func TestServer_ReportsAFieldChangedAfterFirstUse(t *testing.T) {
	s := &Server{}
	if _, err := s.Manager(); err != nil {
		t.Fatal(err)
	}
	s.Handler = protoHandler
	err := s.Serve(listen(t))
	if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "Server.Handler") {
		t.Fatalf("Serve after changing Handler: %v, want an ErrInvalidOption naming Server.Handler", err)
	}
}

// TestServer_ManagerReturnsTheOptionsError: Manager never returns nil
// without an error.
func TestServer_ManagerReturnsTheOptionsError(t *testing.T) {
	s := &Server{DrainTimeout: -time.Second}
	m, err := s.Manager()
	if m != nil || !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "DrainTimeout") {
		t.Fatalf("Manager() = %v, %v; want nil and an ErrInvalidOption naming DrainTimeout", m, err)
	}
	if err := s.Serve(listen(t)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Serve: %v", err)
	}
}

// TestServer_SetKeepAlivesEnabledReachesHTTP2Connections: with keep-alives
// off, net/http's own HTTP/2 server ends each connection after its
// request; so must the per-connection servers.
func TestServer_SetKeepAlivesEnabledReachesHTTP2Connections(t *testing.T) {
	s := &Server{Handler: protoHandler}
	ts := startServer(t, s)
	c, url := ts.client("h2c")
	get(t, c, url)
	s.SetKeepAlivesEnabled(false)
	get(t, c, url)
	waitFor(t, "the h2c connection to end with keep-alives off", func() bool { return s.Stats().OpenTotal == 0 })
}

// TestServer_ErrorLogGetsNetHTTPsLines: ErrorLog still receives what
// net/http logs.
func TestServer_ErrorLogGetsNetHTTPsLines(t *testing.T) {
	var buf syncBuffer
	s := &Server{Handler: protoHandler, ErrorLog: log.New(&buf, "test: ", 0)}
	ts := startServer(t, s)
	c, err := net.Dial("tcp", ts.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "not TLS at all\r\n\r\n")
	bufio.NewReader(c).ReadString('\n')
	c.Close()
	waitFor(t, "the handshake error line", func() bool { return strings.Contains(buf.String(), "test: http: TLS handshake error") })
	if n := s.Stats().TLSHandshakeErrors; n != 1 {
		t.Errorf("TLSHandshakeErrors = %d, want 1", n)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// needTool returns the path of a command the test needs, skipping the
// test without it, unless CI is set (.ci/run installs it), where it fails.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing; .ci/run installs it", name)
		}
		t.Skipf("%s is missing", name)
	}
	return p
}

// TestServer_TLSListenerServesCurlOverH2AndHTTP1: curl, over
// Serve(tls.NewListener(...)), negotiates h2 or http/1.1 and gets r.TLS.
func TestServer_TLSListenerServesCurlOverH2AndHTTP1(t *testing.T) {
	curl := needTool(t, "curl")
	ts := startServer(t, &Server{Handler: protoHandler})
	for _, tc := range []struct{ flag, want string }{
		{"--http2", "HTTP/2.0 tls=true"},
		{"--http1.1", "HTTP/1.1 tls=true"},
	} {
		out, err := exec.Command(curl, "-sS", "-k", "--max-time", "10", tc.flag, "https://"+ts.tlsLAdr+"/").CombinedOutput()
		if err != nil || string(out) != tc.want {
			t.Errorf("curl %s: %q, %v; want %q", tc.flag, out, err, tc.want)
		}
	}
	out, err := exec.Command(curl, "-sS", "--max-time", "10", "--http2-prior-knowledge", "http://"+ts.addr+"/").CombinedOutput()
	if err != nil || string(out) != "HTTP/2.0 tls=false" {
		t.Errorf("curl h2c: %q, %v", out, err)
	}
}
