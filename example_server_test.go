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
	fmt.Println(errors.Is(<-served, http.ErrServerClosed), srv.Stats().OpenTotal)
	// Output:
	// hello
	// true 0
}

func ExampleServer_ServeUntilSignal() {
	srv := &drainhttp.Server{
		Addr:          "127.0.0.1:8080",
		Handler:       http.NotFoundHandler(),
		DrainTime:     30 * time.Second,
		ShutdownDelay: 5 * time.Second,
	}
	// Serves until SIGTERM or SIGINT, drains, and returns nil once every
	// connection is gone; a second signal makes the drain immediate.
	if err := srv.ListenAndServeUntilSignal(); err != nil {
		fmt.Println(err)
	}
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
