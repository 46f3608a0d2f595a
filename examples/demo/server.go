package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drainhttp/drainhttp"
)

// server is one server under test, drainhttp's or net/http's, with what it
// does on SIGTERM.
type server struct {
	name   string // "drainhttp" or "net/http"
	action string // what stop calls, for the display
	serve  func(net.Listener) error
	// stop is the server's SIGTERM handler: it returns when the server is
	// done.
	stop func(context.Context) error
	// window is the length of the time bar shown after the signal: the drain
	// window, or Shutdown's grace period.
	window time.Duration
	// progress is the elapsed fraction of drainhttp's drain window, from its
	// Manager; nil for net/http.
	progress func() float64
	// stats are drainhttp's own connection counters; nil for net/http.
	stats func() drainhttp.Stats
	// close stops the server at once, if the demo is interrupted.
	close func() error
	conns *connTracker
	// logs receives drainhttp's log records, as text; nil for net/http.
	logs *logSink
}

// protocols are the same for both servers: HTTP/1.1 and h2c.
func protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// newDrainServer returns a drainhttp.Server with the default (gradual)
// strategy. On SIGTERM it runs Drain, as ServeUntilSignal does.
func newDrainServer(cfg config, conns *connTracker) (*server, error) {
	logs := new(logSink)
	s := &drainhttp.Server{
		Protocols:         protocols(),
		ReadHeaderTimeout: 5 * time.Second,
		ConnState:         conns.hook,
		DrainTime:         cfg.drainTime,
		DrainTimeout:      cfg.drainTimeout,
		Logger:            slog.New(&logHandler{sink: logs}),
	}
	s.Handler = routes(s.ReadyHandler())
	mgr, err := s.Manager() // also validates the options
	if err != nil {
		return nil, err
	}
	return &server{
		name:   "drainhttp",
		action: "Server.Drain",
		serve:  s.Serve,
		stop: func(ctx context.Context) error {
			// Drain returns by itself at the end of the window plus the
			// connections' deadline; this deadline is only a safety net
			// for the demo.
			ctx, cancel := context.WithTimeout(ctx, cfg.drainTime+cfg.drainTimeout+5*time.Second)
			defer cancel()
			return s.Drain(ctx)
		},
		window:   cfg.drainTime,
		progress: mgr.Progress,
		stats:    s.Stats,
		close:    s.Close,
		conns:    conns,
		logs:     logs,
	}, nil
}

// newPlainServer returns an http.Server with the same settings and handlers
// and the textbook SIGTERM handler: readiness fails, then Shutdown with the
// same total grace period as drainhttp (drain time plus drain timeout), then
// Close if that runs out.
func newPlainServer(cfg config, conns *connTracker) (*server, error) {
	var stopping atomic.Bool
	ready := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if stopping.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	s := &http.Server{
		Handler:           routes(ready),
		Protocols:         protocols(),
		ReadHeaderTimeout: 5 * time.Second,
		ConnState:         conns.hook,
	}
	grace := cfg.drainTime + cfg.drainTimeout
	return &server{
		name:   "net/http",
		action: "http.Server.Shutdown",
		serve:  s.Serve,
		stop: func(ctx context.Context) error {
			stopping.Store(true)
			ctx, cancel := context.WithTimeout(ctx, grace)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				s.Close()
				return err
			}
			return nil
		},
		window: grace,
		close:  s.Close,
		conns:  conns,
	}, nil
}

// Handler parameters, the same for both servers.
const (
	streamLines = 20
	streamEvery = 50 * time.Millisecond
)

// routes returns the handlers both servers serve.
func routes(ready http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ready", ready)
	mux.HandleFunc("/work", work)
	mux.HandleFunc("GET /stream", stream)
	return mux
}

// work reads the request body, works for 5 to 15 ms and answers "ok N",
// N being the number of body bytes read.
func work(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		return // the client is gone
	}
	t := time.NewTimer(5*time.Millisecond + rand.N(10*time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "ok %d\n", n)
}

// stream writes streamLines lines, one every streamEvery, each flushed, and
// a last line "end N". It does not look at drainhttp.Draining: a stream that
// stops early would be a different handler for each server.
func stream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 1; i <= streamLines; i++ {
		if i > 1 {
			t.Reset(streamEvery)
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "line %d\n", i)
		if rc.Flush() != nil {
			return
		}
	}
	io.WriteString(w, "end "+strconv.Itoa(streamLines)+"\n")
}

// connTracker counts a server's connections by state through its ConnState
// hook: the same instrument for both servers. Connections are keyed by
// remote address, because an HTTP/2 connection may be reported through a
// wrapper of the net.Conn that was accepted.
//
// The load balancer's health checker has a keep-alive connection of its
// own, so a server has one connection more than there are clients: the
// checker registers its connections' local addresses in probes, and counts
// tells them apart. (A real server cannot; the demo's display can.)
type connTracker struct {
	mu       sync.Mutex
	state    map[string]http.ConnState
	byState  [http.StateClosed + 1]int64
	accepted int64
	closed   int64
	probes   addrSet
}

func newConnTracker() *connTracker {
	return &connTracker{state: make(map[string]http.ConnState)}
}

// connCounts is a snapshot of a connTracker.
type connCounts struct {
	open, new, active, idle int64
	probe                   int64 // of open, the load balancer's
	accepted, closed        int64
}

// clients is the number of open connections that are the clients'.
func (c connCounts) clients() int64 { return c.open - c.probe }

func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	key := c.RemoteAddr().String()
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.state[key]
	if !ok {
		if s == http.StateClosed || s == http.StateHijacked {
			return
		}
		t.accepted++
	} else {
		t.byState[old]--
	}
	if s == http.StateClosed || s == http.StateHijacked {
		delete(t.state, key)
		t.closed++
		return
	}
	t.state[key] = s
	t.byState[s]++
}

func (t *connTracker) counts() connCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	var probe int64
	for key := range t.state {
		if t.probes.has(key) {
			probe++
		}
	}
	return connCounts{
		open:     int64(len(t.state)),
		new:      t.byState[http.StateNew],
		active:   t.byState[http.StateActive],
		idle:     t.byState[http.StateIdle],
		probe:    probe,
		accepted: t.accepted,
		closed:   t.closed,
	}
}

// addrSet is a set of addresses, safe for concurrent use. The zero value is
// an empty set.
type addrSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *addrSet) add(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]bool)
	}
	s.m[addr] = true
}

func (s *addrSet) has(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[addr]
}
