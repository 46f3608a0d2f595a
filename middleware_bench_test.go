package drainhttp

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// benchWriter is the cheapest ResponseWriter: the benchmarks measure the
// middleware, not the writer.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(int)             {}

func benchHandler(w http.ResponseWriter, r *http.Request) { w.Write(nil) }

// benchServer is a Server with a 1-minute gradual drain configured (none
// running), its middleware, and a request as the Server hands it to its
// handler: the context carries the connection record under net/http's
// own values.
func benchServer(b *testing.B, s *Server) (http.Handler, *http.Request, *conn) {
	s.Handler = http.HandlerFunc(benchHandler)
	s.DrainTime = time.Minute
	s.rand = func() float64 { return 0.99 }
	s.Logger = slog.New(slog.DiscardHandler)
	if _, err := s.Manager(); err != nil {
		b.Fatal(err)
	}
	client, server := net.Pipe()
	b.Cleanup(func() { client.Close(); server.Close(); s.Close() })
	c := s.tracker.add(server, nil)
	ctx := context.WithValue(context.Background(), http.ServerContextKey, s.srv)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, &net.TCPAddr{})
	ctx = s.srv.ConnContext(ctx, server)
	ctx, cancel := context.WithCancel(ctx)
	b.Cleanup(cancel)
	r, err := http.NewRequestWithContext(ctx, "GET", "http://example.test/", nil)
	if err != nil {
		b.Fatal(err)
	}
	return s.srv.Handler, r, c
}

func BenchmarkBareHandler(b *testing.B) {
	_, r, _ := benchServer(b, &Server{})
	h := http.HandlerFunc(benchHandler)
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkMiddleware is a request through the Server's middleware while
// nothing drains: the decision, the policies' checks, the request count.
func BenchmarkMiddleware(b *testing.B) {
	h, r, _ := benchServer(b, &Server{})
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkMiddlewareAllPolicies is BenchmarkMiddleware with every
// connection policy, RetryAfter and the adaptive shutdown configured, none
// firing (the rand source never picks the GoAway chance).
func BenchmarkMiddlewareAllPolicies(b *testing.B) {
	h, r, _ := benchServer(b, &Server{
		ConnPolicy: ConnPolicy{MaxConnectionAge: time.Hour, MaxRequestsPerConnection: 1 << 62, GoAwayChance: MaxGoAwayChance, GoAwayChanceHTTP1: true},
		RetryAfter: &RetryAfter{After: 0.5},
		Adaptive:   &AdaptiveShutdown{},
	})
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkRequestPath is what the server adds to one keep-alive HTTP/1.1
// request while nothing drains: the ConnState hook's two transitions
// (active, then idle, each a lookup of the connection's record) and the
// middleware.
func BenchmarkRequestPath(b *testing.B) {
	s := &Server{}
	h, r, c := benchServer(b, s)
	w := &benchWriter{h: http.Header{}}
	hook := s.srv.ConnState
	c.setState(http.StateIdle)
	b.ReportAllocs()
	for b.Loop() {
		hook(c.nc, http.StateActive)
		h.ServeHTTP(w, r)
		hook(c.nc, http.StateIdle)
	}
}
