// Command server is a runnable drainhttp server, to try draining by hand:
// run it, send it traffic, then drain it with SIGTERM or Ctrl-C (a second
// one makes the drain immediate) or through its admin port, and watch it
// exit 0 once every connection is gone. SIGHUP upgrades it without losing a
// request: it starts its own binary again (rebuild it first to upgrade),
// hands the new process its listening sockets, admin port included, and
// once that one is ready, drains and exits 0 (drainhttp/restart).
//
// From the repository root, in bash on Linux:
//
//	go build -o /tmp/server ./examples/server
//	rm -f /tmp/server.pid
//	/tmp/server -drain-time 3s -pid-file /tmp/server.pid & old=$!
//	timeout 10 sh -c 'until [ -s /tmp/server.pid ]; do sleep 0.1; done'  # written once it serves
//	curl -s localhost:8080/                          # ok
//	curl -s --http2-prior-knowledge localhost:8080/  # ok, over h2c
//	curl -s localhost:9901/status; echo              # phase, readiness, connections
//	kill -HUP $old; wait $old; echo "exit $?"        # hot restart: the old process hands over, exit 0
//	curl -si localhost:8080/ | grep -i x-server-pid  # served by the new process
//	curl -sN 'localhost:8080/stream?n=100&every=100ms' &  # a stream, 10s long
//	sleep 1; new=$(cat /tmp/server.pid); kill -TERM $new  # drains; the stream stops early
//	tail --pid=$new -f /dev/null                     # until it has drained and exited 0
//
// Build it rather than go run it: go run does not pass SIGTERM on to the
// program it runs, and on SIGHUP it exits, deleting the binary, as soon as
// the process it started has handed over. In a terminal, run /tmp/server in
// the foreground instead, and stop it with Ctrl-C (SIGINT, which drains the
// same way); "curl -XPOST localhost:9901/drain" (or ?strategy=immediate)
// drains it too.
//
// # Adaptive shutdown
//
// By default (-adaptive) the shutdown delay and the drain window last only
// as long as they need to (drainhttp.AdaptiveShutdown): the delay, at most
// -shutdown-delay, ends once every readiness checker has seen /ready fail
// -adaptive-probes times and no new connection has arrived for
// -adaptive-quiet; the window, at most -drain-time, ends once no connection
// is open and none has arrived for -adaptive-quiet. A server nobody probes
// and nobody uses stops at once: Ctrl-C on one that no client has reached
// exits 0 after the listener close alone (0.2s), and on one used a moment
// ago, -adaptive-quiet after its last new connection. With -adaptive=false
// both are fixed: Ctrl-C on an idle server waits -shutdown-delay +
// -drain-time + the listener close, 15.2s with the defaults.
//
// Anything that GETs /ready on the admin port (a curl too) is a readiness
// checker for the next minute: the delay then waits for its failed checks,
// or for -shutdown-delay. /status is not a check.
//
// It also runs under systemd, with socket activation or without: see
// examples/systemd; and on Kubernetes: see examples/kubernetes.
//
// Flags:
//
//	-addr            public HTTP/1.1 and h2c address (default 127.0.0.1:8080)
//	-tls-addr        public TLS address, h2 and HTTP/1.1 via ALPN, with a
//	                 self-signed certificate made at start (default: none)
//	-admin           admin address (admin.New): the status page, /ready,
//	                 /status, /metrics, POST /drain, POST /healthcheck/fail
//	                 and /ok (default 127.0.0.1:9901)
//	-admin-token-file
//	                 file holding the bearer token that the admin port's POST
//	                 endpoints require (default: none, no token)
//	-drain-time      drain window, Envoy's --drain-time-s; with -adaptive its
//	                 maximum (default 10s)
//	-drain-timeout   per-connection hard deadline once told to close (default 5s)
//	-strategy        gradual or immediate (default gradual)
//	-shutdown-delay  time to keep serving, not ready, before the window; with
//	                 -adaptive its maximum (default 5s)
//	-adaptive        end the shutdown delay and the drain window early, as
//	                 above (default true; -adaptive=false for fixed ones)
//	-adaptive-probes failed readiness checks each checker must have seen:
//	                 the checkers' failure threshold (default 3)
//	-adaptive-quiet  time without a new connection that shows the traffic
//	                 has gone elsewhere (default 2s)
//	-log-level       debug, info, warn or error (default info)
//	-pid-file        file to write the PID of the serving process to, once
//	                 ready; systemd's PIDFile= (default: none)
//	-upgrade-timeout how long the old process waits for the new one to be
//	                 ready on SIGHUP before killing it (default 1m)
//	-parent-shutdown-time
//	                 how long the old process drains after an upgrade, at
//	                 most, before closing what is left (default 2m)
//
// Handlers on the public address:
//
//	/                     200 "ok\n"
//	/sleep?d=500ms        sleeps d (or until the request ends), then answers
//	/stream?n=10&every=100ms
//	                      streams n lines, one every interval, and stops
//	                      early, with a last line saying so, when its
//	                      connection starts draining
//
// Every public response carries X-Server-Pid, the PID of the process that
// served it, to watch an upgrade happen.
//
// For tests only: if DRAINHTTP_EXAMPLE_TEST_CHILD names a file, a process
// started by an upgrade reads it after taking over its listeners and, if it
// says "crash", panics; if it says "never-ready", hangs without ever
// reporting ready. The process started by hand ignores it.
//
// Bad flags exit 2; a failure to listen or serve exits 1.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/drainhttp/drainhttp/admin"
	"github.com/drainhttp/drainhttp/drainprom"
	"github.com/drainhttp/drainhttp/restart"
	"github.com/lmittmann/tint"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// Defaults of the flags that drainhttp has no constant for.
const (
	defaultDrainTime     = 10 * time.Second
	defaultDrainTimeout  = 5 * time.Second
	defaultShutdownDelay = 5 * time.Second
)

// config is the parsed command line.
type config struct {
	addr, tlsAddr, admin string
	adminToken           string
	drainTime            time.Duration
	drainTimeout         time.Duration
	shutdownDelay        time.Duration
	strategy             drainhttp.Strategy
	adaptive             bool
	adaptiveProbes       int
	adaptiveQuiet        time.Duration
	level                slog.Level
	pidFile              string
	upgradeTimeout       time.Duration
	parentShutdownTime   time.Duration
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// parseError is an error that package flag has already printed, with the
// usage.
type parseError struct{ error }

func (e parseError) Unwrap() error { return e.error }

// parseFlags parses args. A parseError has already been printed; other
// errors are for the caller to print.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{strategy: drainhttp.Gradual, level: slog.LevelInfo}
	var tokenFile string
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "public `address` for HTTP/1.1 and h2c")
	fs.StringVar(&cfg.tlsAddr, "tls-addr", "", "public TLS `address` (h2 and HTTP/1.1, self-signed certificate); empty means none")
	fs.StringVar(&cfg.admin, "admin", "127.0.0.1:9901", "admin `address` (keep it private)")
	fs.StringVar(&tokenFile, "admin-token-file", "", "`file` holding the bearer token the admin POST endpoints require; empty means none")
	fs.DurationVar(&cfg.drainTime, "drain-time", defaultDrainTime, "drain window (Envoy --drain-time-s); with -adaptive, its maximum")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", defaultDrainTimeout, "per-connection deadline once told to close (Envoy drain_timeout)")
	fs.DurationVar(&cfg.shutdownDelay, "shutdown-delay", defaultShutdownDelay, "keep serving, not ready, this long before the drain window; with -adaptive, at most this long")
	fs.BoolVar(&cfg.adaptive, "adaptive", true, "end the shutdown delay once the readiness checkers have let go, and the window once the traffic is gone")
	fs.IntVar(&cfg.adaptiveProbes, "adaptive-probes", drainhttp.DefaultAdaptiveProbes, "with -adaptive, failed readiness checks each checker must have seen (its failure threshold)")
	fs.DurationVar(&cfg.adaptiveQuiet, "adaptive-quiet", drainhttp.DefaultAdaptiveQuiet, "with -adaptive, time without a new connection that shows the traffic has gone")
	fs.StringVar(&cfg.pidFile, "pid-file", "", "write the serving process's PID to this `file` once ready (systemd PIDFile=)")
	fs.DurationVar(&cfg.upgradeTimeout, "upgrade-timeout", restart.DefaultUpgradeTimeout, "on SIGHUP, how long to wait for the new process to be ready")
	fs.DurationVar(&cfg.parentShutdownTime, "parent-shutdown-time", restart.DefaultParentShutdownTime, "after an upgrade, how long the old process drains at most (Envoy --parent-shutdown-time-s)")
	fs.Func("strategy", "drain strategy: gradual or immediate (default gradual)", func(v string) error {
		s, err := drainhttp.ParseStrategy(v)
		cfg.strategy = s
		return err
	})
	fs.Func("log-level", "log level: debug, info, warn or error (default info)", func(v string) error {
		l, ok := logLevels[v]
		if !ok {
			return fmt.Errorf("unknown log level %q (want debug, info, warn or error)", v)
		}
		cfg.level = l
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return cfg, parseError{err}
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case cfg.addr == "":
		return cfg, errors.New("-addr must not be empty")
	case cfg.admin == "":
		return cfg, errors.New("-admin must not be empty")
	case cfg.drainTime < 0:
		return cfg, fmt.Errorf("-drain-time %v is negative", cfg.drainTime)
	case cfg.drainTimeout < 0:
		return cfg, fmt.Errorf("-drain-timeout %v is negative", cfg.drainTimeout)
	case cfg.shutdownDelay < 0:
		return cfg, fmt.Errorf("-shutdown-delay %v is negative", cfg.shutdownDelay)
	case cfg.adaptiveProbes < 1:
		return cfg, fmt.Errorf("-adaptive-probes %d is not positive", cfg.adaptiveProbes)
	case cfg.adaptiveQuiet <= 0:
		return cfg, fmt.Errorf("-adaptive-quiet %v is not positive", cfg.adaptiveQuiet)
	case cfg.upgradeTimeout < 0:
		return cfg, fmt.Errorf("-upgrade-timeout %v is negative", cfg.upgradeTimeout)
	case cfg.parentShutdownTime < 0:
		return cfg, fmt.Errorf("-parent-shutdown-time %v is negative", cfg.parentShutdownTime)
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return cfg, fmt.Errorf("-admin-token-file: %w", err)
		}
		if cfg.adminToken = strings.TrimSpace(string(b)); cfg.adminToken == "" {
			return cfg, fmt.Errorf("-admin-token-file %s is empty", tokenFile)
		}
	}
	return cfg, nil
}

// run is the program; it returns the exit code.
func run(args []string, stderr *os.File) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if !errors.As(err, new(parseError)) {
			fmt.Fprintf(stderr, "server: %v\n", err)
		}
		return 2
	}
	logger := slog.New(tint.NewTextHandler(stderr, &tint.Options{
		Level:      cfg.level,
		TimeFormat: "15:04:05.000",
		NoColor:    !isTerminal(stderr),
	})).With("proc", os.Getpid()) // an upgrade's two processes share stderr
	if err := serve(cfg, logger); err != nil {
		logger.Error("server: " + err.Error())
		return 1
	}
	return 0
}

// isTerminal reports whether f is a terminal, without a dependency: a
// character device is as close as the standard library gets.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// serve listens on every address (or takes the sockets over from the
// process it upgrades, or from systemd), serves until SIGTERM or SIGINT (or
// POST /drain on the admin port), drains, and then stops the admin server.
// On SIGHUP it upgrades, and once the new process is ready, drains and
// returns nil.
func serve(cfg config, logger *slog.Logger) error {
	r, err := restart.New(restart.Options{
		PIDFile:            cfg.pidFile,
		UpgradeTimeout:     cfg.upgradeTimeout,
		ParentShutdownTime: cfg.parentShutdownTime,
		Logger:             logger,
	})
	if err != nil {
		return err
	}
	defer r.Stop()
	// Every listener comes from r, the admin one included: a new process
	// must inherit them all, or it could not bind the addresses.
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	listen := func(addr string) (net.Listener, error) {
		l, err := r.Listen("tcp", addr)
		if err == nil {
			listeners = append(listeners, l)
		}
		return l, err
	}
	pub, err := listen(cfg.addr)
	if err != nil {
		return err
	}
	var tlsLn net.Listener
	var tlsConf *tls.Config
	if cfg.tlsAddr != "" {
		if tlsLn, err = listen(cfg.tlsAddr); err != nil {
			closeAll()
			return err
		}
		cert, err := selfSignedCert()
		if err != nil {
			closeAll()
			return err
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	}
	adminLn, err := listen(cfg.admin)
	if err != nil {
		closeAll()
		return err
	}

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)            // h2 over TLS, via ALPN
	protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	s := &drainhttp.Server{
		Handler:           withPID(routes()),
		Protocols:         &protos,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errorLog,
		DrainTime:         cfg.drainTime,
		DrainTimeout:      cfg.drainTimeout,
		Strategy:          cfg.strategy,
		ShutdownDelay:     cfg.shutdownDelay,
		Logger:            logger,
	}
	if cfg.adaptive {
		s.Adaptive = &drainhttp.AdaptiveShutdown{Probes: cfg.adaptiveProbes, Quiet: cfg.adaptiveQuiet}
	}
	// Every field is set: the first method call below freezes them.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := drainprom.Register(reg, s, nil); err != nil {
		closeAll()
		return err
	}
	// The admin server is a plain http.Server on a listener of its own: it
	// must keep answering while s drains, so it is not s.
	adminSrv := &http.Server{
		Handler: admin.New(s, admin.Options{
			Token:   cfg.adminToken,
			Logger:  logger,
			Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          errorLog,
	}
	// One connection per request: after an upgrade, a health checker that
	// kept its connection open would go on asking the old process, which
	// answers /ready 503 while it drains, although the new one is ready.
	adminSrv.SetKeepAlivesEnabled(false)

	attrs := []any{"addr", pub.Addr().String()}
	serveFns := []func() error{func() error { return s.Serve(pub) }}
	if tlsLn != nil {
		attrs = append(attrs, "tls_addr", tlsLn.Addr().String())
		serveFns = append(serveFns, func() error { return s.ServeTLS(tlsLn, "", "") })
	}
	// r closes the admin listener when s has drained, or at the handoff
	// (the new process's admin server answers from then on); Serve then
	// returns an error wrapping net.ErrClosed, which r does not count as
	// a failure.
	serveFns = append(serveFns, func() error { return adminSrv.Serve(adminLn) })
	attrs = append(attrs, "admin", adminLn.Addr().String(), "strategy", cfg.strategy.String(),
		"drain_time", cfg.drainTime.String(), "drain_timeout", cfg.drainTimeout.String(),
		"shutdown_delay", cfg.shutdownDelay.String(), "adaptive", cfg.adaptive)
	if cfg.adaptive {
		attrs = append(attrs, "adaptive_probes", cfg.adaptiveProbes, "adaptive_quiet", cfg.adaptiveQuiet.String())
	}
	attrs = append(attrs, "upgraded", r.HasParent())
	logger.Info("server: listening", attrs...)

	if r.HasParent() {
		misbehaveForTests(logger)
	}
	err = r.ServeUntilSignal(s, serveFns...)

	// The drain is over (or serving failed), and the admin listener is
	// closed: let the admin requests in flight finish.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if aerr := adminSrv.Shutdown(ctx); aerr != nil {
		adminSrv.Close()
	}
	closeAll()
	if err != nil {
		return err
	}
	logger.Info("server: drained, exiting")
	return nil
}

// testChildEnv names the file that tells a process started by an upgrade
// to misbehave, for tests.
const testChildEnv = "DRAINHTTP_EXAMPLE_TEST_CHILD"

// misbehaveForTests makes this process, started by an upgrade, crash or
// never report ready if the file named by DRAINHTTP_EXAMPLE_TEST_CHILD says
// so: how tests check that the old process keeps serving then.
func misbehaveForTests(logger *slog.Logger) {
	name := os.Getenv(testChildEnv)
	if name == "" {
		return
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return
	}
	switch strings.TrimSpace(string(b)) {
	case "crash":
		panic("server: crashing after start, as " + testChildEnv + " says")
	case "never-ready":
		logger.Warn("server: never reporting ready, as " + testChildEnv + " says")
		for {
			time.Sleep(time.Hour) // until the old process kills us
		}
	}
}

// withPID sets X-Server-Pid on every response: which process served it.
func withPID(h http.Handler) http.Handler {
	pid := strconv.Itoa(os.Getpid())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Server-Pid", pid)
		h.ServeHTTP(w, r)
	})
}

// routes returns the public handlers.
func routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /sleep", sleep)
	mux.HandleFunc("GET /stream", stream)
	return mux
}

// sleep answers after d (?d=500ms), or returns early if the request ends.
func sleep(w http.ResponseWriter, r *http.Request) {
	d, err := durationParam(r, "d", -1)
	if err == nil && d < 0 {
		err = errors.New(`missing parameter "d" (say, ?d=500ms)`)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return // the client is gone or the connection was closed
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "slept %v\n", d)
}

// maxStreamLines bounds ?n so that a typo cannot keep a connection busy for
// days.
const maxStreamLines = 1_000_000

// stream writes n lines (?n=10), one every interval (?every=100ms), flushing
// each. When its connection starts draining it writes a last line saying so
// and returns, so the response ends cleanly before the connection's drain
// deadline.
func stream(w http.ResponseWriter, r *http.Request) {
	n, err := intParam(r, "n", 10)
	if err == nil && (n < 0 || n > maxStreamLines) {
		err = fmt.Errorf("parameter \"n\" = %d is outside [0, %d]", n, maxStreamLines)
	}
	var every time.Duration
	if err == nil {
		every, err = durationParam(r, "every", 100*time.Millisecond)
	}
	if err == nil && every < 0 {
		err = fmt.Errorf("parameter \"every\" = %v is negative", every)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff") // browsers show it as it comes
	rc := http.NewResponseController(w)
	draining := drainhttp.Draining(r.Context())
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 1; i <= n; i++ {
		if i > 1 {
			t.Reset(every)
			select {
			case <-t.C:
			case <-draining:
				fmt.Fprintf(w, "stopped after %d of %d lines: connection draining\n", i-1, n)
				return
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "line %d of %d\n", i, n)
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// durationParam returns the duration in query parameter name, or def if it
// is absent.
func durationParam(r *http.Request, name string, def time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("parameter %q: %q is not a duration (say, 500ms)", name, v)
	}
	return d, nil
}

// intParam returns the integer in query parameter name, or def if it is
// absent.
func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("parameter %q: %q is not an integer", name, v)
	}
	return n, nil
}

// selfSignedCert makes a certificate for localhost, 127.0.0.1 and ::1,
// valid for a day, in memory.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "drainhttp example"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
