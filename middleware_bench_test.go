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
func benchRequest(b *testing.B) *http.Request {
	mgr, err := NewManager(ManagerOptions{DrainTime: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	t := newTracker(mgr, realClock{}, time.Second, slog.New(slog.DiscardHandler), nil)
	c := &trackedConn{t: t}
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

func BenchmarkBareHandler(b *testing.B) {
	h := http.HandlerFunc(benchHandler)
	w, r := &benchWriter{h: http.Header{}}, benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	mgr, err := NewManager(ManagerOptions{DrainTime: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	h := Middleware(mgr)(http.HandlerFunc(benchHandler))
	w, r := &benchWriter{h: http.Header{}}, benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
