package drainhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/justinas/alice"
)

func ExampleServer_Drain() {
	srv := &drainhttp.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}),
		DrainTime:    100 * time.Millisecond, // production: 30s or more
		DrainTimeout: time.Second,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	resp, err := http.Get("http://" + l.Addr().String())
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	// Usually srv.ListenAndServeUntilSignal() does this on SIGTERM.
	if err := srv.Drain(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println(errors.Is(<-served, http.ErrServerClosed), srv.Stats().OpenTotal, srv.Status().Phase)
	// Output:
	// hello
	// true 0 drained
}

func ExampleServer_ServeUntilSignal() {
	srv := &drainhttp.Server{
		Addr:          "127.0.0.1:8080",
		Handler:       http.NotFoundHandler(),
		DrainTime:     30 * time.Second,
		ShutdownDelay: 15 * time.Second, // at most: Adaptive ends it once the load balancer has let go
		Adaptive:      &drainhttp.AdaptiveShutdown{},
	}
	// Serves until SIGTERM or SIGINT, drains, and returns nil once every
	// connection is gone; a second signal makes the drain immediate.
	if err := srv.ListenAndServeUntilSignal(); err != nil {
		fmt.Println(err)
	}
}

func ExampleServer_OnPhase() {
	srv := &drainhttp.Server{Handler: http.NotFoundHandler()}
	srv.OnPhase(func(pc drainhttp.PhaseChange) {
		// Deregister from a service registry at not_ready, flush a queue
		// at closing_connections...
		fmt.Println(pc.Phase, pc.Cause)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(l)
	srv.Drain(context.Background())
	// Output:
	// not_ready drain
	// window no_delay
	// closing_listeners window_end
	// closing_connections listeners_closed
	// drained no_connection_left
}

func ExampleMiddleware() {
	var maintenance atomic.Bool
	chain := alice.New(drainhttp.Middleware(drainhttp.DecisionFunc(maintenance.Load)))
	srv := httptest.NewServer(chain.ThenFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	for _, drain := range []bool{false, true} {
		maintenance.Store(drain)
		resp, err := http.Get(srv.URL)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println("connection closed after response:", resp.Close)
	}
	// Output:
	// connection closed after response: false
	// connection closed after response: true
}

func ExampleDraining() {
	srv := &drainhttp.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A long-lived handler (server-sent events, a long poll) finishes
		// when its connection starts draining, before its deadline.
		select {
		case <-drainhttp.Draining(r.Context()):
			io.WriteString(w, "draining: come back on a new connection")
		case <-time.After(time.Hour):
		}
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(l)
	got := make(chan string)
	go func() {
		resp, err := http.Get("http://" + l.Addr().String())
		if err != nil {
			panic(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	for srv.Stats().Open["http/1.1"]["active"] == 0 {
		time.Sleep(time.Millisecond)
	}
	srv.StartDrainNow()
	fmt.Println(<-got)
	<-srv.Done()
	// Output:
	// draining: come back on a new connection
}

func ExampleWithPolicy() {
	srv := &drainhttp.Server{Handler: http.NotFoundHandler()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	// Connections on this listener live at most ten minutes (± 10 %),
	// and serve at most 1000 requests.
	go srv.Serve(drainhttp.WithPolicy(l, drainhttp.ConnPolicy{MaxConnectionAge: 10 * time.Minute, MaxRequestsPerConnection: 1000}))
	srv.Close()
}
