package drainhttp_test

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/drainhttp/drainhttp"
)

// A server that upgrades itself on SIGHUP without losing a request, and
// drains on SIGTERM. Run it under systemd with PIDFile= and
// ExecReload=/bin/kill -HUP $MAINPID (see examples/systemd), or send SIGHUP
// to the PID in the PID file. (Not run: it would re-execute the test.)
func ExampleRestarter() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	r, err := drainhttp.NewRestarter(drainhttp.RestartOptions{
		PIDFile:            "/run/example/server.pid",
		ParentShutdownTime: time.Minute,
		Logger:             logger,
	})
	if err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
	// Inherited from the old process after an upgrade, taken from systemd
	// with socket activation, or bound now.
	ln, err := r.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
	s := &drainhttp.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello\n")
		}),
		DrainTime:    30 * time.Second,
		DrainTimeout: 5 * time.Second,
		Logger:       logger,
	}
	// Reports ready (the old process, if any, then drains and exits), and
	// serves until SIGTERM, SIGINT or a successful SIGHUP upgrade.
	if err := r.ServeUntilSignal(s, func() error { return s.Serve(ln) }); err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
}
