// Command benchserver is the server of bench/throughput.sh and
// bench/drain_at_scale.sh: one mux answering "ok" on / (and
// /sleep?d=DURATION, which sleeps until d or until its connection ends),
// served over HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on one port by
// the server that -server names:
//
//	nethttp     a plain http.Server: ListenAndServe, and Shutdown on SIGTERM
//	nethttp-tcp the same on a plain TCP listener (Multipath TCP off), the
//	            way drainhttp's ListenAndServe listens: to tell the
//	            listener's part from the rest
//	drainhttp   a drainhttp.Server as the README shows it: Addr, Handler,
//	            DrainTime, DrainTimeout, Logger, and
//	            ListenAndServeUntilSignal
//
// Both set Protocols to HTTP/1.1 plus unencrypted HTTP/2, which is what h2c
// needs from either; nothing else differs. Each listens the way its
// ListenAndServe does: net/http with net.Listen (Multipath TCP where the
// kernel has it, since Go 1.24), drainhttp with plain TCP.
//
// SIGTERM or SIGINT ends either: net/http shuts down, drainhttp drains
// (-drain-time, 0 by default so that the benchmark's runs end at once).
//
// With -admin (drainhttp only), bench/drain_at_scale.sh drives it: the
// drainhttp.Server's admin handler (drainhttp/admin: GET /status,
// POST /drain) is served by a plain http.Server on that address, the
// server's logs go to stderr at -log-level, and the process exits 0 once
// drained, whether POST /drain or a signal started the drain.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/drainhttp/drainhttp/admin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen `address`")
	which := flag.String("server", "drainhttp", "server: nethttp or drainhttp")
	adminAddr := flag.String("admin", "", "admin `address` (drainhttp only)")
	drainTime := flag.Duration("drain-time", 0, "drain window (drainhttp)")
	drainTimeout := flag.Duration("drain-timeout", 5*time.Second, "per-connection drain timeout (drainhttp)")
	strategy := flag.String("strategy", "gradual", "gradual or immediate (drainhttp)")
	level := flag.String("log-level", "info", "debug, info, warn or error (drainhttp)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `file` until the server stops")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			io.WriteString(w, "slept\n")
		case <-r.Context().Done():
		}
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)

	switch *which {
	case "nethttp", "nethttp-tcp":
		if *adminAddr != "" {
			fatal(errors.New("-admin needs -server drainhttp"))
		}
		serveNetHTTP(&http.Server{Addr: *addr, Handler: mux, Protocols: &protos}, *which == "nethttp-tcp")
	case "drainhttp":
		st, err := drainhttp.ParseStrategy(*strategy)
		if err != nil {
			fatal(err)
		}
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			fatal(err)
		}
		srv := &drainhttp.Server{
			Addr:         *addr,
			Handler:      mux,
			Protocols:    &protos,
			DrainTime:    *drainTime,
			DrainTimeout: *drainTimeout,
			Strategy:     st,
			Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})),
		}
		if *adminAddr != "" {
			serveAdmin(srv, *adminAddr)
		}
		fmt.Fprintf(os.Stderr, "benchserver: drainhttp on %s\n", *addr)
		if err := srv.ListenAndServeUntilSignal(); err != nil {
			fatal(err)
		}
		return
	default:
		fatal(fmt.Errorf("unknown -server %q (want nethttp, nethttp-tcp or drainhttp)", *which))
	}
}

// serveNetHTTP is the plain program: ListenAndServe (or Serve on a TCP
// listener) until SIGTERM or SIGINT, then Shutdown.
func serveNetHTTP(srv *http.Server, tcp bool) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	if tcp {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		l, err := lc.Listen(ctx, "tcp", srv.Addr)
		if err != nil {
			fatal(err)
		}
		go func() { errc <- srv.Serve(l) }()
	} else {
		go func() { errc <- srv.ListenAndServe() }()
	}
	fmt.Fprintf(os.Stderr, "benchserver: nethttp on %s\n", srv.Addr)
	select {
	case err := <-errc:
		fatal(err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
}

// serveAdmin serves s's admin handler on addr with a plain http.Server,
// never with s itself (which would drain it with the rest).
func serveAdmin(s *drainhttp.Server, addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fatal(err)
	}
	a := &http.Server{Handler: admin.New(s, admin.Options{})}
	go a.Serve(l)
	go func() {
		<-s.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	}()
	fmt.Fprintf(os.Stderr, "benchserver: admin on %s\n", l.Addr())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchserver:", err)
	os.Exit(1)
}
