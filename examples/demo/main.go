// Command demo drains a loaded drainhttp server and, for comparison, shuts
// down a plain net/http server the usual way, with the same clients and the
// same signal, and shows both live in the terminal and in an SVG chart.
//
//	go run ./examples/demo
//	go run ./examples/demo -clients 48 -drain-time 15s -out ./drain-demo.svg
//
// # The scenario
//
// Each server listens on 127.0.0.1 and speaks HTTP/1.1 and h2c (HTTP/2 with
// prior knowledge). Both serve the same handlers: /work (GET or POST, a few
// milliseconds of work), /stream (20 lines, one every 50 ms, flushed) and
// /ready, the readiness endpoint. Go clients, each with its own keep-alive
// connection, send traffic: busy GET and POST clients over HTTP/1.1 and h2c
// (one request every 25 ms), idle clients that send one request every 1.5 s
// or so (their connection is idle most of the time), and streaming clients.
// Requests start on a schedule, not one after the other, so that a request
// that fails in a microsecond does not make its client send more of them.
//
// drainhttp runs with its defaults (the Gradual strategy) and the
// -drain-time and -drain-timeout given; both servers have the same
// ReadHeaderTimeout and protocols, and serve through the same handlers.
//
// After -warmup the server gets what SIGTERM would give it: drainhttp's
// Server.Drain, which is what ServeUntilSignal calls on SIGTERM, and, for the
// plain server, the textbook handler: mark /ready failing, then
// http.Server.Shutdown with a grace period of -drain-time plus
// -drain-timeout (the same total time drainhttp may take), then Close if
// that runs out. The call is made in-process rather than by sending SIGTERM
// to ourselves, so that a Ctrl-C still just stops the demo and the test can
// run it; the servers cannot tell the difference.
//
// # The load balancer model, the same for both
//
// The clients stand for a service behind a load balancer. A health checker,
// shared by all the clients of a run, polls /ready every -probe-interval
// (200 ms), at the same instants relative to the signal for both servers
// (half an interval after it, then every interval), so that both get the same
// detection delay. Once one probe fails (a 503, or no answer at all) the load
// balancer takes the server out: each client finishes its current request
// and sends no new one. Until then the clients keep sending as usual.
//
// Every request that does not come back complete (status 200 and the whole
// body) is a failure, counted by cause: "refused" (the listener was closed:
// a load balancer that retries connect failures could have sent it
// elsewhere), "reset" (the connection or the HTTP/2 stream died under the
// request), "eof" (the connection closed mid-response), "timeout", "status"
// and "other". Go's client retries what it safely can by itself (idempotent
// requests on a reused connection, streams refused by a GOAWAY): what is
// left is what a caller sees.
//
// What the model does not do: it does not retry failed requests on another
// backend, and it does not add a delay before Shutdown (the "preStop sleep"
// that a careful net/http deployment adds for the same reason drainhttp
// keeps accepting during its window). The baseline is the common SIGTERM
// handler, not the best one can write by hand.
//
// So with the defaults, the plain server's losses are the requests sent in
// the tenth of a second between the signal and the load balancer's
// noticing, to a listener that is already closed; drainhttp serves them,
// then closes its idle connections gracefully. A larger -probe-interval (a
// slower load balancer, as with Kubernetes endpoints) makes that gap, and
// the difference, larger.
//
// # Output
//
// On a terminal, progress bars (github.com/vbauerster/mpb) show the drain
// window, the connections by state (the load balancer's told apart from
// the clients': it has a keep-alive connection of its own, so a server has
// one connection more than there are clients), requests per second and
// failures, and drainhttp's own Stats; events, and drainhttp's Info logs,
// show above them with their time since the signal. When stdout is not a
// terminal, the same every second in plain lines. Text is laid out in the
// terminal's width (from golang.org/x/term; at most 100 columns), or in 80
// columns when it is not known, and wrapped at spaces only.
//
// Then a side-by-side table, the path of the chart (gonum.org/v1/plot:
// open connections, successful requests per second and cumulative failures
// over time, both servers), also as a file:// URL, and two lines:
//
//	summary: requests=N failed=N drained=N seconds=X
//	baseline: requests=N failed=N refused=N reset=N other=N seconds=X
//
// summary is drainhttp's run: drained is the number of connections its
// Stats counted as drained, seconds the time Drain took. baseline is
// net/http's: its failures by cause (other is eof, timeout, status and
// other), and the time Shutdown took.
//
// The exit code is 0 if drainhttp failed no request, 1 if it failed some or
// the demo could not run, and 2 for bad flags.
//
// Flags:
//
//	-clients         number of clients, spread over the six kinds (default 24)
//	-warmup          traffic before the signal (default 3s)
//	-drain-time      drainhttp's drain window, DrainTime (default 6s)
//	-drain-timeout   drainhttp's per-connection deadline, DrainTimeout (default 3s)
//	-probe-interval  load balancer health check interval (default 200ms)
//	-out             chart file, .svg or .png (default drain-demo.svg in the
//	                 temporary directory)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the parsed command line.
type config struct {
	clients       int
	warmup        time.Duration
	drainTime     time.Duration
	drainTimeout  time.Duration
	probeInterval time.Duration
	out           string
}

// parseFlags parses args; flag errors are printed to stderr with the usage.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.clients, "clients", 24, "clients: busy GET and POST (HTTP/1.1, h2c), idle, streaming")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "traffic before the signal")
	fs.DurationVar(&cfg.drainTime, "drain-time", 6*time.Second, "drainhttp's drain window (DrainTime)")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 3*time.Second, "drainhttp's per-connection deadline (DrainTimeout)")
	fs.DurationVar(&cfg.probeInterval, "probe-interval", 200*time.Millisecond, "load balancer health check interval")
	fs.StringVar(&cfg.out, "out", filepath.Join(os.TempDir(), "drain-demo.svg"), "chart `file` (.svg or .png)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	ext := strings.ToLower(filepath.Ext(cfg.out))
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case cfg.clients < 1:
		return cfg, fmt.Errorf("-clients %d: want at least 1", cfg.clients)
	case cfg.warmup <= 0:
		return cfg, fmt.Errorf("-warmup %v: want a positive duration", cfg.warmup)
	case cfg.drainTime <= 0:
		return cfg, fmt.Errorf("-drain-time %v: want a positive duration", cfg.drainTime)
	case cfg.drainTimeout <= 0:
		return cfg, fmt.Errorf("-drain-timeout %v: want a positive duration", cfg.drainTimeout)
	case cfg.probeInterval <= 0:
		return cfg, fmt.Errorf("-probe-interval %v: want a positive duration", cfg.probeInterval)
	case ext != ".svg" && ext != ".png":
		return cfg, fmt.Errorf("-out %q: want a .svg or .png file", cfg.out)
	}
	return cfg, nil
}

// run is the program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 2
	}
	_, termWidth := terminal(stdout)
	width := textWidth(termWidth)
	printHeader(stdout, cfg, width)

	var results []*result
	for _, newServer := range []func(config, *connTracker) (*server, error){newDrainServer, newPlainServer} {
		srv, err := newServer(cfg, newConnTracker())
		if err != nil {
			fmt.Fprintf(stderr, "demo: %v\n", err)
			return 1
		}
		res, err := runScenario(ctx, cfg, srv, newDisplay(stdout, cfg, srv))
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "demo: interrupted")
			return 1
		}
		if err != nil {
			fmt.Fprintf(stderr, "demo: %s: %v\n", srv.name, err)
			return 1
		}
		printResult(stdout, res, width)
		results = append(results, res)
	}

	printComparison(stdout, results)
	if err := writeChart(cfg.out, cfg, results); err != nil {
		fmt.Fprintf(stderr, "demo: chart: %v\n", err)
		return 1
	}
	// The path, and the same as a file:// URL, which terminals make a link
	// of. Neither is wrapped.
	fmt.Fprintf(stdout, "\nchart: %s\n       %s\n\n", cfg.out, fileURL(cfg.out))
	drain, plain := results[0], results[1]
	fmt.Fprintln(stdout, summaryLine(drain))
	fmt.Fprintln(stdout, baselineLine(plain))
	if drain.failed() > 0 {
		return 1
	}
	return 0
}

// fileURL returns the file:// URL of path, made absolute.
func fileURL(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter: file:///C:/...
	}
	return (&url.URL{Scheme: "file", Path: p}).String()
}
