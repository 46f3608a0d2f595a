// Command benchserver is the server of the benchmark scripts: one handler
// answering "ok" (and /sleep?d=DURATION, which sleeps until d or until its
// connection ends), served over HTTP/1.1 and h2c (HTTP/2 with prior
// knowledge) on one port, by the server that -server names:
//
//	nethttp     a plain http.Server (the baseline)
//	drainhttp   a drainhttp.Server with its defaults (tracker, middleware,
//	            per-connection HTTP/2 servers), not draining
//	middleware  a plain http.Server with drainhttp.Middleware in front of
//	            the handler
//
// bench/throughput.sh runs it like that: it prints "listening ADDR" once it
// accepts, and exits 0 on SIGTERM or SIGINT after closing the server.
//
// With -admin, bench/drain_at_scale.sh runs it as the drainhttp library
// alone, with the command line of examples/server: a drainhttp.Server
// configured by -drain-time, -drain-timeout and -strategy, its AdminHandler
// (GET /status, POST /drain) on a plain http.Server at -admin, its logs at
// -log-level on stderr; it drains on POST /drain, SIGTERM or SIGINT and
// exits 0 once drained.
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
	"syscall"
	"time"

	"github.com/drainhttp/drainhttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen `address`")
	which := flag.String("server", "drainhttp", "server: nethttp, drainhttp or middleware")
	admin := flag.String("admin", "", "admin `address`: drain mode (drainhttp only)")
	drainTime := flag.Duration("drain-time", 10*time.Second, "drain window (drain mode)")
	drainTimeout := flag.Duration("drain-timeout", 5*time.Second, "per-connection drain timeout (drain mode)")
	strategy := flag.String("strategy", "gradual", "gradual or immediate (drain mode)")
	level := flag.String("log-level", "info", "debug, info, warn or error (drain mode)")
	flag.Parse()

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
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

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fail(err)
	}
	if *admin != "" {
		if *which != "drainhttp" {
			fmt.Fprintln(os.Stderr, "benchserver: -admin needs -server drainhttp")
			os.Exit(2)
		}
		st, err := drainhttp.ParseStrategy(*strategy)
		if err != nil {
			fail(err)
		}
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			fail(err)
		}
		drainMode(l, *admin, &drainhttp.Server{
			Handler:      mux,
			Protocols:    &protos,
			IdleTimeout:  2 * time.Minute,
			DrainTime:    *drainTime,
			DrainTimeout: *drainTimeout,
			Strategy:     st,
			Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})),
		})
		return
	}

	var serve func(net.Listener) error
	var closeSrv func() error
	switch *which {
	case "nethttp":
		s := &http.Server{Handler: mux, Protocols: &protos}
		serve, closeSrv = s.Serve, s.Close
	case "middleware":
		mgr, err := drainhttp.NewManager(drainhttp.ManagerOptions{})
		if err != nil {
			fail(err)
		}
		s := &http.Server{Handler: drainhttp.Middleware(mgr)(mux), Protocols: &protos}
		serve, closeSrv = s.Serve, s.Close
	case "drainhttp":
		s := &drainhttp.Server{Handler: mux, Protocols: &protos}
		serve, closeSrv = s.Serve, s.Close
	default:
		fmt.Fprintf(os.Stderr, "benchserver: unknown -server %q (want nethttp, drainhttp or middleware)\n", *which)
		os.Exit(2)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	errc := make(chan error, 1)
	go func() { errc <- serve(l) }()
	fmt.Printf("listening %s %s\n", l.Addr(), *which)
	select {
	case <-sigs:
		closeSrv()
		<-errc
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			fail(err)
		}
	}
}

// drainMode serves s on l and its admin handler on adminAddr until s has
// drained.
func drainMode(l net.Listener, adminAddr string, s *drainhttp.Server) {
	al, err := net.Listen("tcp", adminAddr)
	if err != nil {
		fail(err)
	}
	adminSrv := &http.Server{Handler: s.AdminHandler(drainhttp.AdminOptions{})}
	go adminSrv.Serve(al)
	fmt.Printf("listening %s drainhttp, admin %s\n", l.Addr(), al.Addr())
	err = s.ServeUntilSignal(func() error { return s.Serve(l) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	adminSrv.Shutdown(ctx)
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchserver:", err)
	os.Exit(1)
}
