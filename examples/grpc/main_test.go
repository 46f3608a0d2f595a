package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Drain parameters of the load tests: short, so the tests are quick, but
// long enough for many connection cycles.
const (
	drainTime    = time.Second
	drainTimeout = time.Second
	// stopAt is the drain progress after which no call is started, so that
	// none races the listener closing at 1.0.
	stopAt = 0.8
)

// testServer is a drainhttp.Server serving the gRPC example on a loopback
// listener, h2c or TLS.
type testServer struct {
	s        *drainhttp.Server
	gs       *grpc.Server
	addr     string
	creds    credentials.TransportCredentials
	serveErr chan error
}

func startServer(t *testing.T, useTLS bool) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), creds: insecure.NewCredentials(), serveErr: make(chan error, 1)}
	var tlsConf *tls.Config
	if useTLS {
		cert, err := selfSignedCert()
		if err != nil {
			t.Fatal(err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(leaf)
		ts.creds = credentials.NewTLS(&tls.Config{RootCAs: roots})
	}
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// A little latency per call keeps calls in flight when GOAWAYs arrive.
	slow := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		time.Sleep(rand.N(3 * time.Millisecond))
		return h(ctx, req)
	})
	ts.s, ts.gs = newServer(tlsConf, logger, slow)
	ts.s.DrainTime = drainTime
	ts.s.DrainTimeout = drainTimeout
	go func() {
		if useTLS {
			ts.serveErr <- ts.s.ServeTLS(ln, "", "")
		} else {
			ts.serveErr <- ts.s.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		ts.s.Close()
		ts.gs.Stop()
	})
	return ts
}

// tWriter sends the server's logs to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (ts *testServer) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	// A plain grpc-go client: no retry policy, no wait-for-ready. Over
	// insecure credentials it speaks HTTP/2 with prior knowledge: h2c.
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(ts.creds))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// result counts the outcomes of the calls of a load test.
type result struct {
	ok      atomic.Int64
	failed  atomic.Int64
	serving atomic.Int64 // Check answers SERVING
	notServ atomic.Int64 // Check answers NOT_SERVING

	watching     atomic.Int64 // Watch streams that received a status
	watches      atomic.Int64 // Watch streams that ended, OK
	watchNotServ atomic.Int64 // of which saw NOT_SERVING

	mu   sync.Mutex
	errs []string
}

func (r *result) fail(format string, args ...any) {
	r.failed.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 10 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// loadThroughDrain runs unary Check calls from workers goroutines spread
// over clients ClientConns, plus one Watch loop, then drains the server.
// Every call started before the drain is stopAt done must succeed.
func loadThroughDrain(t *testing.T, useTLS bool) {
	const clients, workers = 3, 12
	ts := startServer(t, useTLS)
	var ccs []*grpc.ClientConn
	for range clients {
		cc := ts.dial(t)
		defer cc.Close()
		ccs = append(ccs, cc)
	}
	var res result
	mgr, err := ts.s.Manager()
	if err != nil {
		t.Fatal(err)
	}
	// A call may start only while the listener surely still accepts.
	mayStart := func() bool { return mgr.Progress() < stopAt }
	drainStarted := make(chan struct{})
	abort := make(chan struct{}) // the test failed before the drain
	mayStop := func() bool {
		select {
		case <-drainStarted:
			return !mayStart()
		case <-abort:
			return true
		default:
			return false
		}
	}

	var wg sync.WaitGroup
	for i := range workers {
		hc := healthpb.NewHealthClient(ccs[i%clients])
		wg.Go(func() {
			for !mayStop() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
				cancel()
				switch {
				case err != nil:
					res.fail("Check at progress %.2f: %v", mgr.Progress(), err)
				case resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
					res.ok.Add(1)
					res.serving.Add(1)
				case resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING:
					res.ok.Add(1)
					res.notServ.Add(1)
				default:
					res.fail("Check: status %v", resp.GetStatus())
				}
			}
		})
	}
	// One server-streaming call at a time: each ends, OK, when its
	// connection starts draining, and the loop watches again.
	hc := healthpb.NewHealthClient(ccs[0])
	wg.Go(func() {
		for !mayStop() {
			watch(&res, hc, mgr)
		}
	})

	// Steady state: every worker's calls succeed, and a Watch is running.
	steady := time.Now().Add(10 * time.Second)
	for res.ok.Load() < 10*workers || res.watching.Load() == 0 {
		if time.Now().After(steady) || res.failed.Load() > 0 {
			close(abort)
			wg.Wait()
			res.mu.Lock()
			errs := res.errs
			res.mu.Unlock()
			t.Fatalf("before the drain: %d calls ok, %d failed, %d watches; failures: %v",
				res.ok.Load(), res.failed.Load(), res.watching.Load(), errs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := res.ok.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	close(drainStarted)
	if err := ts.s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	took := time.Since(start)
	wg.Wait()
	if err := <-ts.serveErr; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}

	st := ts.s.Stats()
	t.Logf("calls: %d ok (%d before the drain; %d SERVING, %d NOT_SERVING), %d failed; watch streams ended OK: %d (%d saw NOT_SERVING)",
		res.ok.Load(), before, res.serving.Load(), res.notServ.Load(), res.failed.Load(), res.watches.Load(), res.watchNotServ.Load())
	t.Logf("drain took %v; stats: accepted %d, goaways %d, drained %v, forced %d, open %d",
		took.Round(time.Millisecond), st.Accepted, st.GoAways, st.Drained, st.Forced, st.OpenTotal)

	if n := res.failed.Load(); n > 0 {
		t.Errorf("%d calls failed through the drain; first ones:\n%s", n, strings.Join(res.errs, "\n"))
	}
	if res.notServ.Load() == 0 {
		t.Error("no Check answered NOT_SERVING during the drain")
	}
	if res.watches.Load() == 0 || res.watchNotServ.Load() == 0 {
		t.Errorf("Watch streams: %d ended, %d saw NOT_SERVING; want both > 0", res.watches.Load(), res.watchNotServ.Load())
	}
	// Connections cycled: every client connection was sent a GOAWAY, and
	// the clients reconnected during the window.
	if st.GoAways < clients {
		t.Errorf("GoAways = %d, want >= %d", st.GoAways, clients)
	}
	if st.Accepted <= clients {
		t.Errorf("Accepted = %d, want > %d: the clients never reconnected", st.Accepted, clients)
	}
	if st.OpenTotal != 0 {
		t.Errorf("%d connections still open after Drain", st.OpenTotal)
	}
	if took > drainTime+drainTimeout+time.Second {
		t.Errorf("Drain took %v, want about %v", took, drainTime)
	}
}

// watch runs one Watch call to its end: it must send a status and end OK.
func watch(res *result, hc healthpb.HealthClient, mgr *drainhttp.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil {
		res.fail("Watch at progress %.2f: %v", mgr.Progress(), err)
		return
	}
	var got []healthpb.HealthCheckResponse_ServingStatus
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			res.fail("Watch at progress %.2f, after %v: %v", mgr.Progress(), got, err)
			return
		}
		if len(got) == 0 {
			res.watching.Add(1)
		}
		got = append(got, m.GetStatus())
	}
	if len(got) == 0 {
		res.fail("Watch ended without a status")
		return
	}
	res.watches.Add(1)
	if got[len(got)-1] == healthpb.HealthCheckResponse_NOT_SERVING {
		res.watchNotServ.Add(1)
	}
}

// TestDrainH2C: grpc-go clients over h2c keep every call succeeding while
// the server drains, reconnecting as their connections get GOAWAYs.
func TestDrainH2C(t *testing.T) { loadThroughDrain(t, false) }

// TestDrainTLS: the same over TLS, h2 negotiated with ALPN.
func TestDrainTLS(t *testing.T) { loadThroughDrain(t, true) }

// TestGracefulStopAbortsServeHTTPCalls pins down why the example leaves
// stopping to drainhttp: with the gRPC server mounted through ServeHTTP,
// grpc.Server.GracefulStop (grpc-go v1.85.0) aborts a call in flight
// instead of letting it finish, and no call succeeds after it. Up to
// v1.81.0 it panicked ("Drain() is not implemented").
func TestGracefulStopAbortsServeHTTPCalls(t *testing.T) {
	ts := startServer(t, false)
	cc := ts.dial(t)
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan any)
	go func() {
		defer func() { stopped <- recover() }()
		ts.gs.GracefulStop()
	}()
	_, err = stream.Recv()
	if p := <-stopped; p != nil {
		t.Fatalf("GracefulStop panicked: %v", p)
	}
	if err == nil || err == io.EOF {
		t.Fatalf("Watch after GracefulStop: %v; want the call aborted", err)
	}
	t.Logf("in-flight Watch after GracefulStop: %v", err)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("Check after GracefulStop succeeded")
	} else {
		t.Logf("Check after GracefulStop: %v", err)
	}
}

// TestRunDrainsOnSIGTERM runs the program as main does, sends it SIGTERM,
// and checks that a Watch in progress ends OK and the program exits 0.
func TestRunDrainsOnSIGTERM(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out syncBuffer
	code := make(chan int, 1)
	go func() { code <- run([]string{"-addr", addr, "-drain-time", "300ms", "-drain-timeout", "1s"}, &out) }()

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A call that succeeds proves the server serves, and so that
	// ServeUntilSignal has registered for SIGTERM.
	var stream healthpb.Health_WatchClient
	for {
		stream, err = hc.Watch(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil {
			break
		}
		select {
		case c := <-code:
			t.Fatalf("run exited %d before serving:\n%s", c, out.String())
		case <-ctx.Done():
			t.Fatalf("server never served: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var got []healthpb.HealthCheckResponse_ServingStatus
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Watch during the drain: %v", err)
		}
		got = append(got, m.GetStatus())
	}
	if len(got) == 0 || got[len(got)-1] != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Watch during the drain sent %v, want it to end with NOT_SERVING", got)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("run exited %d, want 0", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not exit after the drain")
	}
	for _, want := range []string{"grpc: listening", "drain started", "drain complete", "grpc: drained, exiting"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{{"-drain-time", "-1s"}, {"-addr", ""}, {"-nope"}, {"extra"}} {
		var out bytes.Buffer
		if c := run(args, &out); c != 2 {
			t.Errorf("run(%q) = %d, want 2; output:\n%s", args, c, out.String())
		}
	}
}

func TestCheckUnknownServiceNotFound(t *testing.T) {
	ts := startServer(t, false)
	cc := ts.dial(t)
	defer cc.Close()
	_, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Check(nope): %v, want NotFound", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the program's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
