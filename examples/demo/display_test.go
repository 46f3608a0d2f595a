package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/drainhttp/drainhttp"
)

// bigFrame is a frame of a long run with many clients: counts of six
// digits, every failure kind and drain reason.
func bigFrame() *frame {
	f := &frame{
		sample: sample{t: 12345 * time.Millisecond, conns: connCounts{open: 1001, new: 100, active: 500, idle: 401, probe: 1, accepted: 123456, closed: 122455},
			ok: 987654, failed: 123456},
		phase: "Server.Drain", progress: 0.5, rps: 12345, lbDown: 100 * time.Millisecond,
		stats: &drainhttp.Stats{Drained: map[string]uint64{}, Forced: 12345, GoAways: 123456},
	}
	for k := range f.byKind {
		f.byKind[k] = 20576
	}
	for _, r := range drainReasons {
		f.stats.Drained[r] = 13717
	}
	return f
}

// The demo's drains use three reasons (it sets no ConnPolicy, never fails
// the health check, never calls Shutdown), and its failures are of two
// kinds or so.
func TestBarRowsFit80ColumnsUpToAThousandConnections(t *testing.T) {
	f := bigFrame()
	f.byKind = [numFailKinds]int64{failRefused: 20576, failReset: 20576}
	f.stats.Drained = map[string]uint64{"decision": 13717, "proactive": 13717, "window_end": 13717}
	rows := []string{
		row("connections", connParts(f)[0]),
		row("", strings.Join(connParts(f)[1:], "; ")),
		row("requests", requestText(f)),
		row("load balancer", lbText(f)),
		row("drainhttp.Stats", drainedText(f.stats)),
		row("", forcedText(f.stats)),
	}
	for _, r := range rows {
		if n := utf8.RuneCountInString(r); n > defaultWidth {
			t.Errorf("row of %d columns, more than %d: %q", n, defaultWidth, r)
		}
	}
}

func TestBarRowsTooLongAreCutBetweenParts(t *testing.T) {
	f := bigFrame() // every drain reason
	r := row("drainhttp.Stats", drainedText(f.stats))
	got := fit(r, defaultWidth)
	if want := "drainhttp.Stats drained 123453: decision 13717, proactive 13717"; got != want {
		t.Errorf("fit(%q) = %q, want %q", r, got, want)
	}
}

func TestLineDisplayFits80Columns(t *testing.T) {
	var b bytes.Buffer
	srv := &server{name: "drainhttp", action: "Server.Drain", window: 6 * time.Second, progress: func() float64 { return 0 }}
	d := &lineDisplay{out: &b, srv: srv, width: defaultWidth}
	d.start(time.Time{})
	d.update(bigFrame())
	d.event(100*time.Millisecond, "load balancer: /ready probe failed (status 503): no new requests, and a long tail to wrap")
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if n := utf8.RuneCountInString(l); n > defaultWidth {
			t.Errorf("line of %d columns, more than %d: %q", n, defaultWidth, l)
		}
	}
	for _, want := range []string{"[drainhttp] +12.35s drain window  50% of 6.0s", "open 1001 = 1000 from clients + 1 from the load balancer",
		"goaway_chance 13717", "  +0.10s  load balancer:"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
}

func TestDrainedTextShowsADrainsReasonsAndAnyOther(t *testing.T) {
	for _, tc := range []struct {
		drained map[string]uint64
		want    string
	}{
		{map[string]uint64{}, "drained 0: decision 0, proactive 0, window_end 0"},
		{map[string]uint64{"decision": 1, "proactive": 25, "close": 0}, "drained 26: decision 1, proactive 25, window_end 0"},
		{map[string]uint64{"proactive": 2, "max_age": 3, "new_reason": 4}, "drained 9: decision 0, proactive 2, window_end 0, max_age 3, new_reason 4"},
	} {
		if got := drainedText(&drainhttp.Stats{Drained: tc.drained}); got != tc.want {
			t.Errorf("drainedText(%v) = %q, want %q", tc.drained, got, tc.want)
		}
	}
}

func TestConnPartsTellTheLoadBalancersConnectionApart(t *testing.T) {
	f := &frame{sample: sample{conns: connCounts{open: 25, probe: 1, active: 5, idle: 20}}}
	if got, want := connParts(f)[0], "open 25 = 24 from clients + 1 from the load balancer"; got != want {
		t.Errorf("connParts = %q, want %q", got, want)
	}
}

func TestConnTrackerCountsTheProbesConnections(t *testing.T) {
	tr := newConnTracker()
	client, probe := fakeConn("127.0.0.1:1000"), fakeConn("127.0.0.1:2000")
	tr.probes.add("127.0.0.1:2000")
	tr.hook(client, http.StateNew)
	tr.hook(probe, http.StateNew)
	if c := tr.counts(); c.open != 2 || c.probe != 1 || c.clients() != 1 {
		t.Errorf("counts = %+v, want 2 open, 1 of them the probe's", c)
	}
	tr.hook(probe, http.StateClosed)
	if c := tr.counts(); c.open != 1 || c.probe != 0 || c.closed != 1 {
		t.Errorf("after the probe's close: counts = %+v, want 1 open, no probe's, 1 closed", c)
	}
}

// fakeConn is a net.Conn with only a remote address, for the tracker.
type fakeConn string

func (c fakeConn) RemoteAddr() net.Addr { return fakeAddr(c) }

func (fakeConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (fakeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (fakeConn) Close() error                     { return nil }
func (fakeConn) LocalAddr() net.Addr              { return fakeAddr("127.0.0.1:80") }
func (fakeConn) SetDeadline(time.Time) error      { return nil }
func (fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (fakeConn) SetWriteDeadline(time.Time) error { return nil }

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
