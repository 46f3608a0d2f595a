package drainprom_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// socketWait bounds every wait for a real socket to make progress (a
// connection going idle or closing): it is far longer than any of them
// takes, so that only a bug reaches it.
const socketWait = 10 * time.Second

// protocols is HTTP/1.1 and h2c, for a Server.
func protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// serve serves s on a loopback listener until the test ends. It returns
// the server's URL and a function that waits for Serve to return.
func serve(t *testing.T, s *drainhttp.Server) (url string, served func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	served = sync.OnceValue(func() error { return <-done })
	t.Cleanup(func() {
		s.Close()
		if err := served(); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v, want http.ErrServerClosed", err)
		}
	})
	return "http://" + l.Addr().String() + "/", served
}

// transport returns a client transport that speaks only proto
// ("http/1.1" or "h2c"), so that each transport holds one connection to
// the server.
func transport(t *testing.T, proto string) *http.Transport {
	t.Helper()
	var p http.Protocols
	switch proto {
	case "http/1.1":
		p.SetHTTP1(true)
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	default:
		t.Fatalf("unknown protocol %q", proto)
	}
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// get does a GET and returns the response, its body read and closed.
func get(t *testing.T, tr http.RoundTripper, url string) *http.Response {
	t.Helper()
	resp, err := (&http.Client{Transport: tr, Timeout: socketWait}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// okHandler answers every request with "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

// value returns the value of the metric called name whose labels include
// the given pairs (name, value, ...): a gauge's or counter's value, a
// histogram's sample count. It returns -1 if there is no such metric.
func value(t *testing.T, g prometheus.Gatherer, name string, pairs ...string) float64 {
	t.Helper()
	m := find(t, g, name, pairs...)
	switch {
	case m == nil:
		return -1
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	default:
		return m.GetGauge().GetValue()
	}
}

// find returns the first metric called name whose labels include the
// given pairs, or nil.
func find(t *testing.T, g prometheus.Gatherer, name string, pairs ...string) *dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, pairs...) {
				return m
			}
		}
	}
	return nil
}

func hasLabels(m *dto.Metric, pairs ...string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			found = found || lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1]
		}
		if !found {
			return false
		}
	}
	return true
}

// waitFor polls until the metric has the value want, for at most
// socketWait. Use it only for what real sockets do in their own time.
func waitFor(t *testing.T, g prometheus.Gatherer, want float64, name string, pairs ...string) {
	t.Helper()
	deadline := time.Now().Add(socketWait)
	for {
		got := value(t, g, name, pairs...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after %v, want %v", name, pairs, got, socketWait, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// allPhases returns every drainhttp.Phase, in order: those whose String
// is a name rather than drainhttp's "Phase(?)" for an unknown value.
func allPhases() []drainhttp.Phase {
	var ps []drainhttp.Phase
	for p := drainhttp.PhaseServing; p < 255; p++ {
		if strings.HasPrefix(p.String(), "Phase(") {
			break
		}
		ps = append(ps, p)
	}
	return ps
}

// Documented label values of drainhttp_connections.
var (
	connProtocols = []string{"h2", "h2c", "http/1.1"}
	connStates    = []string{"active", "hijacked", "idle", "new"}
)

// scalarNames are the metric families that want renders: every family
// but the drain progress (compared apart, since it moves during a drain),
// the phase start times (wall clock) and the histogram (durations).
var scalarNames = []string{
	"drainhttp_connections",
	"drainhttp_connections_accepted_total",
	"drainhttp_connections_drained_total",
	"drainhttp_connections_forced_closed_total",
	"drainhttp_goaways_sent_total",
	"drainhttp_draining",
	"drainhttp_health_check_failed",
	"drainhttp_ready",
	"drainhttp_phase",
	"drainhttp_listeners",
	"drainhttp_tls_handshake_errors_total",
}

// want is the expected state of the families in scalarNames. Zero fields
// expect zero; phase's zero value is PhaseServing.
type want struct {
	open                                            map[string]int // "h2c/idle": 2
	drained                                         map[string]int // "proactive": 5
	accepted, forced, goaways, listeners, tlsErrors int
	draining, hcFailed, ready                       bool
	phase                                           drainhttp.Phase
}

// render renders w as the text exposition of scalarNames, without HELP,
// for testutil.GatherAndCompare. The reasons are the keys of s's
// Stats.Drained, which the metric must follow exactly.
func (w want) render(s *drainhttp.Server, lbl prometheus.Labels) string {
	var b strings.Builder
	family := func(name, typ string) { fmt.Fprintf(&b, "# TYPE %s %s\n", name, typ) }
	one := func(name, typ string, v any) {
		family(name, typ)
		b.WriteString(series(name, v, lbl))
	}
	family("drainhttp_connections", "gauge")
	for _, p := range connProtocols {
		for _, st := range connStates {
			b.WriteString(series("drainhttp_connections", w.open[p+"/"+st], lbl, "protocol", p, "state", st))
		}
	}
	one("drainhttp_connections_accepted_total", "counter", w.accepted)
	family("drainhttp_connections_drained_total", "counter")
	for _, r := range slices.Sorted(maps.Keys(s.Stats().Drained)) {
		b.WriteString(series("drainhttp_connections_drained_total", w.drained[r], lbl, "reason", r))
	}
	one("drainhttp_connections_forced_closed_total", "counter", w.forced)
	one("drainhttp_goaways_sent_total", "counter", w.goaways)
	one("drainhttp_draining", "gauge", bit(w.draining))
	one("drainhttp_health_check_failed", "gauge", bit(w.hcFailed))
	one("drainhttp_ready", "gauge", bit(w.ready))
	family("drainhttp_phase", "gauge")
	for _, p := range allPhases() {
		b.WriteString(series("drainhttp_phase", bit(p == w.phase), lbl, "phase", p.String()))
	}
	one("drainhttp_listeners", "gauge", w.listeners)
	one("drainhttp_tls_handshake_errors_total", "counter", w.tlsErrors)
	return b.String()
}

func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// series renders one sample line: the labels of constLabels and pairs
// (name, value, ...) in the order the registry sorts them (testutil sorts
// families and series itself).
func series(name string, v any, constLabels prometheus.Labels, pairs ...string) string {
	labels := maps.Clone(constLabels)
	if labels == nil {
		labels = prometheus.Labels{}
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		labels[pairs[i]] = pairs[i+1]
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return fmt.Sprintf("%s{%s} %v\n", name, strings.Join(parts, ","), v)
}

// noHelp gathers from g with the HELP strings removed, as testutil reads
// an expected exposition without HELP lines.
type noHelp struct{ g prometheus.Gatherer }

func (n noHelp) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := n.g.Gather()
	for _, mf := range mfs {
		mf.Help = new(string)
	}
	return mfs, err
}

// compare checks that the families in scalarNames are exactly w.
func compare(t *testing.T, g prometheus.Gatherer, s *drainhttp.Server, lbl prometheus.Labels, w want) {
	t.Helper()
	if err := testutil.GatherAndCompare(noHelp{g}, strings.NewReader(w.render(s, lbl)), scalarNames...); err != nil {
		t.Error(err)
	}
}

// exposition scrapes g through promhttp.HandlerFor, as Prometheus would,
// and parses the text exposition with strict (legacy) name validation.
func exposition(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics handler: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return mfs
}

// checkTimeline checks that drainhttp_phase_start_time_seconds has one
// series per phase of s's timeline, each its start time, and no other.
func checkTimeline(t *testing.T, g prometheus.Gatherer, s *drainhttp.Server, want ...drainhttp.Phase) {
	t.Helper()
	timeline := s.Status().Timeline
	var got []drainhttp.Phase
	for _, pc := range timeline {
		got = append(got, pc.Phase)
	}
	if !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
	mf := exposition(t, g)["drainhttp_phase_start_time_seconds"]
	if n := len(mf.GetMetric()); n != len(timeline) {
		t.Errorf("drainhttp_phase_start_time_seconds has %d series, want %d (one per phase entered)", n, len(timeline))
	}
	for _, pc := range timeline {
		v := value(t, g, "drainhttp_phase_start_time_seconds", "phase", pc.Phase.String())
		// The exposition has about 15 significant digits: microseconds.
		if at := float64(pc.At.UnixNano()) / 1e9; v < at-1e-5 || v > at+1e-5 {
			t.Errorf("start of %v = %.6f, want %.6f (%v)", pc.Phase, v, at, pc.At)
		}
	}
}
