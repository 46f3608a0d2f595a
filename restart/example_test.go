package restart_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/drainhttp/drainhttp/restart"
)

// A server that hands its socket to a new copy of its binary on SIGHUP and
// drains on SIGTERM. Here a goroutine stands in for the world: once the
// listener is served it sends a request, then shuts the server down by
// other means, which ServeUntilSignal waits for.
func Example() {
	r, err := restart.New(restart.Options{ParentShutdownTime: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Inherited from the old process after an upgrade, taken from systemd
	// with socket activation, or bound now.
	ln, err := r.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	s := &drainhttp.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}),
		DrainTime:    30 * time.Second,
		DrainTimeout: 5 * time.Second,
	}

	go func() {
		<-r.Serving()
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + ln.Addr().String())
		if err != nil {
			fmt.Println(err)
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Println(string(body))
		}
		s.Shutdown(context.Background())
	}()

	// Reports ready once ln is served (the old process, if any, then
	// drains and exits), and serves until SIGTERM, SIGINT, a successful
	// SIGHUP upgrade, or, here, Shutdown.
	err = r.ServeUntilSignal(s, func() error { return s.Serve(ln) })
	fmt.Println("ServeUntilSignal:", err)
	// Output:
	// hello
	// ServeUntilSignal: <nil>
}

// The main function of a service run by systemd with PIDFile= and
// ExecReload=/bin/kill -HUP $MAINPID (see examples/systemd), optionally with
// a .socket unit. (Not run: it waits for signals.)
func ExampleRestarter_ServeUntilSignal() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	r, err := restart.New(restart.Options{
		PIDFile: "/run/example/server.pid",
		Logger:  logger,
	})
	if err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
	ln, err := r.Listen("tcp", ":8443")
	if err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
	admin, err := r.Listen("tcp", "127.0.0.1:9901")
	if err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
	s := &drainhttp.Server{Handler: http.DefaultServeMux, DrainTime: 30 * time.Second, Logger: logger}
	adminMux := http.NewServeMux()
	adminMux.Handle("/ready", s.ReadyHandler())
	adminServer := &http.Server{Handler: adminMux}
	// If the certificate does not load, ServeUntilSignal returns the
	// error without reporting ready, and the old process goes on serving.
	err = r.ServeUntilSignal(s,
		func() error { return s.ServeTLS(ln, "/etc/example/cert.pem", "/etc/example/key.pem") },
		func() error { return adminServer.Serve(admin) }, // closed at the handoff
	)
	if err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
}
