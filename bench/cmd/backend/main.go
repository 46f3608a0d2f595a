// Command backend is the backend of the rollout benchmarks
// (bench/rollout_nginx.sh, bench/rollout_caddy.sh, bench/rollout_haproxy.sh):
// one binary that serves the same handler behind a real proxy, as the server
// that -mode names:
//
//	drainhttp  a drainhttp.Server run by ListenAndServeUntilSignal: on
//	           SIGTERM its readiness fails, it waits -shutdown-delay (with
//	           -adaptive, until the load balancer has let go, at most
//	           -shutdown-delay), drains for -drain-time as -strategy says,
//	           then closes what is left, each connection by its
//	           -drain-timeout deadline
//	plain      a plain http.Server: on SIGTERM /ready answers 503, it
//	           sleeps -shutdown-delay, then calls Shutdown with a context of
//	           -drain-timeout, and Close if that runs out (what a net/http
//	           service usually does by hand)
//
// Both serve HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on -addr:
//
//	GET  /          sleeps -work, answers 1 KiB of text
//	POST /          sleeps -work, reads the body, answers its length and
//	                SHA-256 (400 if the body is shorter than its
//	                Content-Length says)
//	GET  /ready     drainhttp: Server.ReadyHandler; plain: 200 until
//	                SIGTERM, 503 after
//
// It prints "listening ADDR MODE" on stdout once it accepts, and on exit one
// line beginning "summary" with the time from SIGTERM to exit and what it
// served; for drainhttp also the Stats (GOAWAYs sent, connections drained
// by reason, forced closes) and the phases with their start relative to
// SIGTERM. With -trace it logs connection events to stderr, each stamped
// with the time since SIGTERM (negative before), for matching a proxy's
// error log against the drain.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drainhttp/drainhttp"
)

// counters is what both modes count.
type counters struct {
	gets, posts, readys, ready503, badBodies atomic.Uint64
	accepted                                 atomic.Uint64
}

// sigClock holds the moment SIGTERM arrived, for stamping events.
type sigClock struct {
	start time.Time    // process start, the fallback origin
	at    atomic.Int64 // UnixNano of SIGTERM; 0 before
}

// mark records t as SIGTERM's arrival, unless one is recorded already.
func (c *sigClock) mark(t time.Time) { c.at.CompareAndSwap(0, t.UnixNano()) }

// since is the time from SIGTERM to t (negative before it), or from the
// process start if no SIGTERM came.
func (c *sigClock) since(t time.Time) time.Duration {
	if at := c.at.Load(); at != 0 {
		return t.Sub(time.Unix(0, at))
	}
	return t.Sub(c.start)
}

func (c *sigClock) stamp() string { return fmt.Sprintf("%+.3fs", c.since(time.Now()).Seconds()) }

func main() {
	mode := flag.String("mode", "drainhttp", "server: drainhttp or plain")
	name := flag.String("name", "backend", "`label` printed in the summary")
	addr := flag.String("addr", "127.0.0.1:18090", "listen `address`")
	work := flag.Duration("work", 2*time.Millisecond, "time each GET or POST takes before answering")
	drainTime := flag.Duration("drain-time", 3*time.Second, "drain window (drainhttp)")
	drainTimeout := flag.Duration("drain-timeout", 2*time.Second, "per-connection drain deadline (drainhttp); Shutdown's context (plain)")
	shutdownDelay := flag.Duration("shutdown-delay", 0, "time serving normally with /ready failing before draining; with -adaptive, the longest")
	strategy := flag.String("strategy", "gradual", "gradual or immediate (drainhttp)")
	adaptive := flag.Bool("adaptive", false, "adaptive shutdown (drainhttp): end the delay and window as soon as the load balancer has let go")
	probes := flag.Int("probes", 0, "adaptive: failed readiness checks each probe source must see (0: drainhttp's default)")
	quiet := flag.Duration("quiet", 0, "adaptive: time without a new connection (0: drainhttp's default)")
	level := flag.String("log-level", "warn", "drainhttp Logger level on stderr: debug, info, warn or error")
	trace := flag.Bool("trace", false, "log connection events (new, closed; after SIGTERM also idle/active) and drained connections to stderr")
	flag.Parse()

	clk := &sigClock{start: time.Now()}
	var n counters
	var ready atomic.Bool // plain mode's readiness
	ready.Store(true)

	mux := http.NewServeMux()
	page := strings.Repeat("drainhttp rollout benchmark backend\n", 1024/36+1)[:1024]
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		n.gets.Add(1)
		time.Sleep(*work)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, page)
	})
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		n.posts.Add(1)
		time.Sleep(*work)
		h := sha256.New()
		got, err := io.Copy(h, r.Body)
		if err != nil || (r.ContentLength >= 0 && got != r.ContentLength) {
			n.badBodies.Add(1)
			if *trace {
				fmt.Fprintf(os.Stderr, "%s bad-body remote=%s proto=%s got=%d want=%d err=%v\n", clk.stamp(), r.RemoteAddr, r.Proto, got, r.ContentLength, err)
			}
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d %x\n", got, h.Sum(nil))
	})

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)

	connState := func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			n.accepted.Add(1)
		}
		if !*trace {
			return
		}
		if st == http.StateNew || st == http.StateClosed || st == http.StateHijacked || clk.at.Load() != 0 {
			fmt.Fprintf(os.Stderr, "%s conn %s %s\n", clk.stamp(), c.RemoteAddr(), st)
		}
	}

	// Our own notification of SIGTERM, beside the one ListenAndServeUntilSignal
	// (or plain mode) waits on: both channels get the signal.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)

	var summary string
	var err error
	switch *mode {
	case "drainhttp":
		st, perr := drainhttp.ParseStrategy(*strategy)
		if perr != nil {
			fail(perr)
		}
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			fail(err)
		}
		s := &drainhttp.Server{
			Addr:          *addr,
			Protocols:     &protos,
			IdleTimeout:   2 * time.Minute,
			ConnState:     connState,
			DrainTime:     *drainTime,
			DrainTimeout:  *drainTimeout,
			ShutdownDelay: *shutdownDelay,
			Strategy:      st,
			Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})),
		}
		if *adaptive {
			s.Adaptive = &drainhttp.AdaptiveShutdown{Probes: *probes, Quiet: *quiet}
		}
		mux.Handle("GET /ready", countReady(&n, s.ReadyHandler()))
		s.Handler = mux
		var phases []string
		var mu sync.Mutex
		s.OnPhase(func(pc drainhttp.PhaseChange) {
			if pc.Phase == drainhttp.PhaseNotReady {
				clk.mark(pc.At) // the signal, if our own channel has not marked it yet
			}
			mu.Lock()
			defer mu.Unlock()
			phases = append(phases, fmt.Sprintf("%s%+.3fs(%s)", pc.Phase, clk.since(pc.At).Seconds(), pc.Cause))
			if *trace {
				fmt.Fprintf(os.Stderr, "%s phase %s cause=%s\n", clk.stamp(), pc.Phase, pc.Cause)
			}
		})
		if *trace {
			s.OnConnDrained(func(d drainhttp.DrainedConn) {
				fmt.Fprintf(os.Stderr, "%s drained reason=%s proto=%s forced=%v draining=%.3fs\n", clk.stamp(), d.Reason, d.Protocol, d.Forced, d.Draining.Seconds())
			})
		}
		go func() { <-sigs; clk.mark(time.Now()) }()
		go announce(*addr, *mode)
		err = s.ListenAndServeUntilSignal()
		st2 := s.Stats()
		mu.Lock()
		summary = fmt.Sprintf("goaways=%d drained=%s forced=%d phases=%s",
			st2.GoAways, formatDrained(st2.Drained), st2.Forced, strings.Join(phases, ","))
		mu.Unlock()
	case "plain":
		s := &http.Server{Addr: *addr, Protocols: &protos, ConnState: connState, IdleTimeout: 2 * time.Minute}
		mux.Handle("GET /ready", countReady(&n, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !ready.Load() {
				http.Error(w, "draining", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok\n")
		})))
		s.Handler = mux
		l, lerr := net.Listen("tcp", *addr)
		if lerr != nil {
			fail(lerr)
		}
		errc := make(chan error, 1)
		go func() { errc <- s.Serve(l) }()
		fmt.Printf("listening %s %s\n", l.Addr(), *mode)
		var how string
		select {
		case <-sigs:
			clk.mark(time.Now())
			ready.Store(false)
			time.Sleep(*shutdownDelay)
			if *trace {
				fmt.Fprintf(os.Stderr, "%s shutdown\n", clk.stamp())
			}
			shutdownAt := clk.since(time.Now())
			ctx, cancel := context.WithTimeout(context.Background(), *drainTimeout)
			how = "shutdown"
			if e := s.Shutdown(ctx); e != nil {
				how = "close(" + e.Error() + ")"
				s.Close()
			}
			cancel()
			<-errc
			summary = fmt.Sprintf("shutdown_at=%+.3fs ended_by=%s", shutdownAt.Seconds(), how)
		case err = <-errc:
		}
	default:
		fmt.Fprintf(os.Stderr, "backend: unknown -mode %q (want drainhttp or plain)\n", *mode)
		os.Exit(2)
	}
	exit := clk.since(time.Now())
	fmt.Printf("summary name=%s mode=%s sigterm_to_exit=%.3fs gets=%d posts=%d readys=%d ready503=%d bad_bodies=%d conns_accepted=%d %s\n",
		*name, *mode, exit.Seconds(), n.gets.Load(), n.posts.Load(), n.readys.Load(), n.ready503.Load(), n.badBodies.Load(),
		n.accepted.Load(), summary)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		fail(err)
	}
}

// countReady counts readiness checks and their 503 answers around h.
func countReady(n *counters, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.readys.Add(1)
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		if sw.code == http.StatusServiceUnavailable {
			n.ready503.Add(1)
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// announce prints "listening" once addr accepts: ListenAndServeUntilSignal
// listens by itself.
func announce(addr, mode string) {
	for range 500 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			fmt.Printf("listening %s %s\n", addr, mode)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// formatDrained writes the non-zero drain reasons as reason:count,...
func formatDrained(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		if v != 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", k, v))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "backend:", err)
	os.Exit(1)
}
