package drainhttp

import (
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
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every wait in the protocol tests.
const testTimeout = 15 * time.Second

// testProtos are the protocols every protocol test runs over: HTTP/1.1 and
// h2c on a plain listener, h2 through ServeTLS, and h2 and HTTP/1.1
// through Serve(tls.NewListener(...)), which is how autocert, certmagic
// and tls.Listen users serve.
var testProtos = []string{"http/1.1", "h2c", "h2", "h2-tlslistener", "http/1.1-tlslistener"}

// testServer serves one Server on three loopback listeners: plain
// (HTTP/1.1 and h2c), ServeTLS (h2 and HTTP/1.1), and Serve over
// tls.NewListener.
type testServer struct {
	t       *testing.T
	s       *Server
	addr    string // plain
	tlsAddr string // ServeTLS
	tlsLAdr string // Serve(tls.NewListener)
	roots   *x509.CertPool
	cert    tls.Certificate
	served  chan error
}

func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
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
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
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

func allProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startServer serves s on the three listeners until the test ends, when it
// closes s and checks that every Serve returned http.ErrServerClosed.
func startServer(t *testing.T, s *Server) *testServer {
	t.Helper()
	cert, roots := testCert(t)
	if s.Protocols == nil {
		s.Protocols = allProtocols()
	}
	if s.TLSConfig == nil {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	plain, secure, wrapped := listen(t), listen(t), listen(t)
	ts := &testServer{t: t, s: s, addr: plain.Addr().String(), tlsAddr: secure.Addr().String(),
		tlsLAdr: wrapped.Addr().String(), roots: roots, cert: cert, served: make(chan error, 3)}
	tlsl := tls.NewListener(wrapped, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	go func() { ts.served <- s.Serve(plain) }()
	go func() { ts.served <- s.ServeTLS(secure, "", "") }()
	go func() { ts.served <- s.Serve(tlsl) }()
	t.Cleanup(func() {
		s.Close()
		for range 3 {
			if err := <-ts.served; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		}
	})
	return ts
}

// transport returns a client transport for proto (see testProtos) and the
// base URL to use with it.
func (ts *testServer) transport(proto string) (*http.Transport, string) {
	var p http.Protocols
	url := "http://" + ts.addr
	switch proto {
	case "http/1.1":
		p.SetHTTP1(true)
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	case "h2":
		p.SetHTTP2(true)
		url = "https://" + ts.tlsAddr
	case "h2-tlslistener":
		p.SetHTTP2(true)
		url = "https://" + ts.tlsLAdr
	case "http/1.1-tlslistener":
		p.SetHTTP1(true)
		url = "https://" + ts.tlsLAdr
	default:
		ts.t.Fatalf("unknown protocol %q", proto)
	}
	tr := &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: ts.roots}}
	ts.t.Cleanup(tr.CloseIdleConnections)
	return tr, url
}

func (ts *testServer) client(proto string) (*http.Client, string) {
	tr, url := ts.transport(proto)
	return &http.Client{Transport: tr, Timeout: testTimeout}, url
}

// get GETs url with c and returns the body, failing the test on any error
// or a status other than 200.
func get(t testing.TB, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func (ts *testServer) drain() <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- ts.s.Drain(context.Background()) }()
	return errc
}

// waitFor polls cond every millisecond until it holds, failing the test
// after testTimeout. It is for conditions on another goroutine's progress
// over real sockets, which no clock controls.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// latencyDialer dials with every byte delayed by delay in each direction:
// an in-process stand-in for a network with latency (this kernel has no
// netem).
func latencyDialer(delay time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newLatencyConn(c, delay), nil
	}
}

// latencyConn delays what it writes, and what it reads, by delay each: the
// peer sees the bytes delay after they were written, and this side sees
// the peer's bytes delay after they arrived.
type latencyConn struct {
	net.Conn
	delay time.Duration
	out   *delayPipe
	in    *delayPipe
}

func newLatencyConn(c net.Conn, delay time.Duration) *latencyConn {
	lc := &latencyConn{Conn: c, delay: delay, out: newDelayPipe(delay), in: newDelayPipe(delay)}
	go lc.out.pumpTo(c)
	go lc.in.pumpFrom(c)
	return lc
}

func (c *latencyConn) Write(p []byte) (int, error) { return c.out.write(p) }
func (c *latencyConn) Read(p []byte) (int, error)  { return c.in.read(p) }
func (c *latencyConn) Close() error {
	c.out.close()
	c.in.close()
	return c.Conn.Close()
}

// delayPipe holds chunks until their time comes.
type delayPipe struct {
	delay time.Duration
	mu    sync.Mutex
	cond  *sync.Cond
	q     []delayedChunk
	buf   []byte // read side: due bytes not read yet
	err   error  // read side: the source's error, once due
	shut  bool
}

type delayedChunk struct {
	b   []byte
	due time.Time
	err error
}

func newDelayPipe(d time.Duration) *delayPipe {
	p := &delayPipe{delay: d}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *delayPipe) push(b []byte, err error) {
	p.mu.Lock()
	p.q = append(p.q, delayedChunk{append([]byte(nil), b...), time.Now().Add(p.delay), err})
	p.cond.Broadcast()
	p.mu.Unlock()
}

// next waits for the next chunk to be due and returns it; ok is false once
// the pipe is closed.
func (p *delayPipe) next() (delayedChunk, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.q) == 0 && !p.shut {
		p.cond.Wait()
	}
	if p.shut {
		return delayedChunk{}, false
	}
	ch := p.q[0]
	p.q = p.q[1:]
	return ch, true
}

func (p *delayPipe) write(b []byte) (int, error) {
	p.mu.Lock()
	shut := p.shut
	p.mu.Unlock()
	if shut {
		return 0, net.ErrClosed
	}
	p.push(b, nil)
	return len(b), nil
}

// pumpTo writes each chunk to c when it is due.
func (p *delayPipe) pumpTo(c net.Conn) {
	for {
		ch, ok := p.next()
		if !ok {
			return
		}
		time.Sleep(time.Until(ch.due))
		if _, err := c.Write(ch.b); err != nil {
			return
		}
	}
}

// pumpFrom reads c and makes what it reads due delay later.
func (p *delayPipe) pumpFrom(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		p.push(buf[:n], err)
		if err != nil {
			return
		}
	}
}

func (p *delayPipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.err == nil {
		for len(p.q) == 0 && !p.shut {
			p.cond.Wait()
		}
		if p.shut {
			return 0, net.ErrClosed
		}
		ch := p.q[0]
		if wait := time.Until(ch.due); wait > 0 {
			p.mu.Unlock()
			time.Sleep(wait)
			p.mu.Lock()
			continue
		}
		p.q = p.q[1:]
		p.buf, p.err = ch.b, ch.err
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if n == 0 && p.err != nil {
		return 0, p.err
	}
	return n, nil
}

func (p *delayPipe) close() {
	p.mu.Lock()
	p.shut = true
	p.cond.Broadcast()
	p.mu.Unlock()
}
