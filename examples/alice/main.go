// Command alice shows drainhttp's middleware on a plain http.Server, in a
// github.com/justinas/alice chain: the drain decision comes from a
// drainhttp.Manager, and SIGTERM starts its drain sequence before the
// server shuts down.
//
// With a plain http.Server the middleware can only tell connections to close
// as their requests arrive (Connection: close on HTTP/1.1, GOAWAY on HTTP/2):
// idle connections, per-connection deadlines and Draining(ctx) need
// drainhttp.Server. Use this shape when the server is not yours to replace.
//
// From the repository root (stop it with Ctrl-C, which go run passes on as
// it reaches the whole process group; for SIGTERM, build it: go run does
// not forward SIGTERM to the program):
//
//	go run ./examples/alice -addr 127.0.0.1:8081 -drain-time 10s
//	curl -i 127.0.0.1:8081/          # in another terminal; during the drain: Connection: close
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
	"github.com/justinas/alice"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	drainTime := flag.Duration("drain-time", 10*time.Second, "drain window before shutdown")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		logger.Error("listen", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, l, *drainTime, logger); err != nil {
		logger.Error("serve", "err", err)
		os.Exit(1)
	}
}

// run serves on l until ctx ends, then drains for drainTime and shuts down.
func run(ctx context.Context, l net.Listener, drainTime time.Duration, logger *slog.Logger) error {
	mgr, err := drainhttp.NewManager(drainhttp.ManagerOptions{DrainTime: drainTime})
	if err != nil {
		return err
	}
	chain := alice.New(accessLog(logger), drainhttp.Middleware(mgr, drainhttp.WithLogger(logger)))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if !mgr.Ready() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: chain.Then(mux), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	logger.Info("listening", "addr", l.Addr().String())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("draining", "drain_time", drainTime.String())
	done := make(chan struct{})
	mgr.StartDrainSequence(func() { close(done) })
	<-done
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("drained")
	return nil
}

// accessLog is an ordinary middleware, to show the chain.
func accessLog(logger *slog.Logger) alice.Constructor {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			next.ServeHTTP(w, r)
			logger.Debug("request", "method", r.Method, "path", r.URL.Path, "duration", time.Since(start).String())
		})
	}
}
