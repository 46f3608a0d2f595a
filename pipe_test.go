package drainhttp

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// pipeListener is an in-memory listener: its connections are net.Pipe
// pairs, so that a whole Server, net/http included, runs inside a
// testing/synctest bubble, where time is virtual and a ten-minute drain
// takes no time.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// dial connects to the listener: it is refused once the listener is
// closed.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	return l.dialFrom(ctx, nil)
}

// dialFrom is dial with the server's end reporting from as its remote
// address (nil: "pipe").
func (l *pipeListener) dialFrom(ctx context.Context, from net.Addr) (net.Conn, error) {
	server, client := net.Pipe()
	if from != nil {
		server = addrConn{server, from}
	}
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: syscall.ECONNREFUSED}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pipeServer is a Server serving a pipeListener, for synctest bubbles.
type pipeServer struct {
	t      *testing.T
	s      *Server
	l      *pipeListener
	served chan error
}

// startPipeServer serves s, with a fixed-seed random source, until the
// test ends.
func startPipeServer(t *testing.T, s *Server) *pipeServer {
	t.Helper()
	if s.rand == nil {
		s.rand = lockedRand(1)
	}
	if s.Protocols == nil {
		s.Protocols = allProtocols()
	}
	ps := &pipeServer{t: t, s: s, l: newPipeListener(), served: make(chan error, 1)}
	go func() { ps.served <- s.Serve(ps.l) }()
	t.Cleanup(ps.close)
	return ps
}

func (ps *pipeServer) close() {
	ps.s.Close()
	if err := <-ps.served; !errors.Is(err, http.ErrServerClosed) {
		ps.t.Errorf("Serve returned %v", err)
	}
}

// client returns a client over the pipe for proto ("http/1.1" or "h2c").
func (ps *pipeServer) client(proto string) *http.Client {
	var p http.Protocols
	switch proto {
	case "http/1.1":
		p.SetHTTP1(true)
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	default:
		ps.t.Fatalf("no %s over pipes", proto)
	}
	tr := &http.Transport{Protocols: &p, DialContext: ps.l.dial}
	ps.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// do sends method path with c and returns the status, the Connection
// header and the body.
func do(t *testing.T, c *http.Client, method, path string) (int, string, string) {
	t.Helper()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("body")
	}
	req, err := http.NewRequest(method, "http://pipe"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	conn := resp.Header.Get("Connection")
	if resp.Close {
		conn = "close"
	}
	return resp.StatusCode, conn, string(b)
}

// addrConn is a pipe end with a remote address of its own.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// clientFrom is client, with the connections coming from ip.
func (ps *pipeServer) clientFrom(proto, ip string) *http.Client {
	c := ps.client(proto)
	from := &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return ps.l.dialFrom(ctx, from)
	}
	return c
}

// lockedRand is a fixed-seed source of floats in [0, 1), safe for
// concurrent use as a Server's rand must be.
func lockedRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 2))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}
