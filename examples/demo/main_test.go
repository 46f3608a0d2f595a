package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

var (
	summaryRE  = regexp.MustCompile(`(?m)^summary: requests=(\d+) failed=(\d+) drained=(\d+) seconds=(\d+\.\d\d)$`)
	baselineRE = regexp.MustCompile(`(?m)^baseline: requests=(\d+) failed=(\d+) refused=(\d+) reset=(\d+) other=(\d+) seconds=(\d+\.\d\d)$`)
)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDemoDrainhttpLosesNothingAndBaselineDoes(t *testing.T) {
	defer goleak.VerifyNone(t)
	chart := filepath.Join(t.TempDir(), "chart.svg")
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{
		"-clients", "12", "-warmup", "1s", "-drain-time", "2s", "-drain-timeout", "2s", "-out", chart,
	}, &stdout, &stderr)
	t.Logf("took %v\n%s", time.Since(start), stdout.String())
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}

	out := stdout.String()
	m := summaryRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line of the form %s", summaryRE)
	}
	requests, failed, drained := atoi(t, m[1]), atoi(t, m[2]), atoi(t, m[3])
	if failed != 0 || requests == 0 {
		t.Errorf("drainhttp: requests=%d failed=%d, want every request ok", requests, failed)
	}
	// Idle clients may not have connected yet when the signal comes after
	// a 1s warm-up: not every client has a connection to drain.
	if drained == 0 {
		t.Errorf("drained=0: the drain closed no connection")
	}
	if secs, _ := strconv.ParseFloat(m[4], 64); secs < 2 || secs > 4.5 {
		t.Errorf("seconds=%v, want the 2s window, plus at most the 2s deadline", secs)
	}

	b := baselineRE.FindStringSubmatch(out)
	if b == nil {
		t.Fatalf("no baseline line of the form %s", baselineRE)
	}
	bFailed := atoi(t, b[2])
	// With 8 busy clients sending 320 requests/s, the ~50 ms between the
	// listener's close and the load balancer's probe lose some.
	if bFailed == 0 {
		t.Errorf("baseline: failed=0; the plain server should lose the requests sent before the load balancer noticed")
	}
	if got := atoi(t, b[3]) + atoi(t, b[4]) + atoi(t, b[5]); got != bFailed {
		t.Errorf("baseline: refused+reset+other=%d, want failed=%d", got, bFailed)
	}
	// The summary and baseline lines come last, in that order.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if n := len(lines); n < 2 || !strings.HasPrefix(lines[n-2], "summary: ") || !strings.HasPrefix(lines[n-1], "baseline: ") {
		t.Errorf("last two lines are not summary and baseline: %q", lines[max(0, len(lines)-2):])
	}

	url := fileURL(chart)
	if !strings.Contains(out, "chart: "+chart+"\n       "+url+"\n") {
		t.Errorf("the chart's path and URL %s are not printed", url)
	}
	// Not a terminal: every line fits defaultWidth, but the chart's path
	// and URL, which are never wrapped.
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > defaultWidth && !strings.Contains(l, chart) && !strings.Contains(l, url) {
			t.Errorf("line of %d columns, more than %d: %q", n, defaultWidth, l)
		}
	}
	svg, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "</svg>", "open connections", "drainhttp", "net/http", "listener closed"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("chart has no %q", want)
		}
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"-clients", "0"},
		{"-drain-time", "-1s"},
		{"-warmup", "0s"},
		{"-out", "chart.pdf"},
		{"extra"},
		{"-no-such-flag"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run %q = %d, want 2", args, code)
		}
		if stdout.Len() > 0 {
			t.Errorf("run %q printed to stdout: %s", args, stdout.String())
		}
	}
}

func TestBarDisplayFitsItsWidth(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := config{clients: 6, warmup: 500 * time.Millisecond, drainTime: time.Second, drainTimeout: time.Second, probeInterval: 100 * time.Millisecond}
	var out bytes.Buffer
	srv, err := newDrainServer(cfg, newConnTracker())
	if err != nil {
		t.Fatal(err)
	}
	res, err := runScenario(context.Background(), cfg, srv, &barDisplay{out: &out, cfg: cfg, srv: srv, width: defaultWidth, forceTTY: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.failed() != 0 {
		t.Errorf("drainhttp failed %d requests: %v", res.failed(), res.examples)
	}
	for _, want := range []string{"warm-up", "drain window", "done at +", "Server.Drain returned", "from the load balancer",
		"drainhttp.Stats", "load balancer: /ready probe failed (status 503)", "drainhttp: drain started", "drainhttp: drain complete", "\x1b["} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the display never showed %q:\n%q", want, out.String())
		}
	}
	for _, l := range screenLines(out.String()) {
		if n := utf8.RuneCountInString(l); n > defaultWidth {
			t.Errorf("line of %d columns, more than %d: %q", n, defaultWidth, l)
		}
		if strings.Contains(l, "…") {
			t.Errorf("line cut with an ellipsis: %q", l)
		}
	}
}

// ansiRE matches the escape sequences mpb writes: CSI sequences.
var ansiRE = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]")

// screenLines is what mpb's output leaves on screen, line by line, without
// escape sequences: a line is what comes between two newlines or cursor
// moves.
func screenLines(s string) []string {
	s = ansiRE.ReplaceAllString(s, "\n")
	return strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
}
