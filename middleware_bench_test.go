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

// benchRequest is a request as a Server hands it to its handler: its
// context carries the connection record, under net/http's own values.
func benchRequest(b *testing.B, mgr *Manager, policy ConnPolicy) *http.Request {
	t := newTracker(mgr, realClock{}, time.Second, slog.New(slog.DiscardHandler), nil)
	c := &trackedConn{t: t, policy: &policy}
	ctx := context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, &net.TCPAddr{})
	ctx = t.connContext(ctx, c)
	ctx, cancel := context.WithCancel(ctx)
	b.Cleanup(cancel)
	r, err := http.NewRequestWithContext(ctx, "GET", "http://example.test/", nil)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func benchHandler(w http.ResponseWriter, r *http.Request) { w.Write(nil) }

func benchManager(b *testing.B) *Manager {
	mgr, err := NewManager(ManagerOptions{DrainTime: time.Minute, Rand: func() float64 { return 0.99 }})
	if err != nil {
		b.Fatal(err)
	}
	return mgr
}

func BenchmarkBareHandler(b *testing.B) {
	h := http.HandlerFunc(benchHandler)
	w, r := &benchWriter{h: http.Header{}}, benchRequest(b, benchManager(b), ConnPolicy{})
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkMiddleware is a request through the Server's middleware while
// nothing drains.
func BenchmarkMiddleware(b *testing.B) {
	mgr := benchManager(b)
	h := Middleware(mgr)(http.HandlerFunc(benchHandler))
	w, r := &benchWriter{h: http.Header{}}, benchRequest(b, mgr, ConnPolicy{})
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkMiddlewareAllPolicies is BenchmarkMiddleware with every
// connection policy and the Retry-After phase configured, none firing (the
// rand source never picks the GoAway chance).
func BenchmarkMiddlewareAllPolicies(b *testing.B) {
	mgr := benchManager(b)
	policy := ConnPolicy{MaxConnectionAge: time.Hour, MaxRequestsPerConnection: 1 << 62, GoAwayChance: MaxGoAwayChance, GoAwayChanceHTTP1: true}
	h := &middleware{d: mgr, next: http.HandlerFunc(benchHandler), retry: newRetryAfter(&RetryAfter{After: 0.5}, mgr)}
	w, r := &benchWriter{h: http.Header{}}, benchRequest(b, mgr, policy.normalize(time.Second))
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
