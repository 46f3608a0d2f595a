package drainhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsWait bounds every wait for a connection state change in these
// tests: an h2c connection closes about 1 s after its GOAWAY.
const metricsWait = 10 * time.Second

// metricsProtocols is HTTP/1.1 and h2c. Like every Server field it must be
// set before RegisterMetrics, which validates and freezes the options.
func metricsProtocols() *http.Protocols {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	return &protos
}

// metricsServe serves s on a loopback listener until the test ends.
func metricsServe(t *testing.T, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v, want http.ErrServerClosed", err)
		}
	})
	return "http://" + l.Addr().String() + "/"
}

// metricsTransport returns a transport that speaks only proto ("http/1.1"
// or "h2c"), so each transport holds one connection to the server.
func metricsTransport(t *testing.T, proto string) *http.Transport {
	var protos http.Protocols
	switch proto {
	case "http/1.1":
		protos.SetHTTP1(true)
	case "h2c":
		protos.SetUnencryptedHTTP2(true)
	default:
		t.Fatalf("unknown protocol %q", proto)
	}
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// metricsGet does a GET and returns the response, its body read and closed.
func metricsGet(t *testing.T, tr *http.Transport, url string) *http.Response {
	t.Helper()
	c := &http.Client{Transport: tr, Timeout: metricsWait}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// metricsValue returns the value of the metric called name with exactly
// the given variable labels (const labels are ignored): a gauge's or
// counter's value, a histogram's sample count. It returns -1 if there is no
// such metric.
func metricsValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	want := make(map[string]string)
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == k && lp.GetValue() == v
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			default:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// metricsWaitFor polls until the metric has the value want.
func metricsWaitFor(t *testing.T, g prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(metricsWait)
	for {
		got := metricsValue(t, g, name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after %v, want %v", name, labels, got, metricsWait, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noHelp gathers from g with the HELP strings removed, so that expected
// expositions in the tests need only TYPE lines and values.
type noHelp struct{ g prometheus.Gatherer }

func (n noHelp) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := n.g.Gather()
	for _, mf := range mfs {
		mf.Help = new(string) // as testutil reads an exposition without HELP
	}
	return mfs, err
}

// metricsCompare checks the exact values of the named metrics.
func metricsCompare(t *testing.T, g prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(noHelp{g}, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// metricsSeries renders one sample line: the labels in constLabels and
// pairs (name, value, ...) sorted by name, as the registry gathers them.
func metricsSeries(name string, value any, constLabels prometheus.Labels, pairs ...string) string {
	labels := make(map[string]string, len(constLabels)+len(pairs)/2)
	maps.Copy(labels, constLabels)
	for i := 0; i+1 < len(pairs); i += 2 {
		labels[pairs[i]] = pairs[i+1]
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return fmt.Sprintf("%s{%s} %v\n", name, strings.Join(parts, ","), value)
}

// metricsConnections renders the drainhttp_connections family, every
// series 0 except those in nonZero ("h2c/idle": 2).
func metricsConnections(constLabels prometheus.Labels, nonZero map[string]int) string {
	var b strings.Builder
	b.WriteString("# TYPE drainhttp_connections gauge\n")
	for _, p := range []string{"h2", "h2c", "http/1.1"} {
		for _, s := range []string{"active", "hijacked", "idle", "new"} {
			b.WriteString(metricsSeries("drainhttp_connections", nonZero[p+"/"+s], constLabels, "protocol", p, "state", s))
		}
	}
	return b.String()
}

var metricsScalarNames = []string{
	"drainhttp_connections_accepted_total",
	"drainhttp_connections_drained_total",
	"drainhttp_connections_forced_closed_total",
	"drainhttp_goaways_sent_total",
	"drainhttp_draining",
	"drainhttp_drain_progress",
	"drainhttp_health_check_failed",
	"drainhttp_ready",
}

// metricsScalars holds the expected values of the metrics in
// metricsScalarNames.
type metricsScalars struct {
	accepted, decision, proactive, forced, goaways int
	draining, progress, hcFailed, ready            float64
}

// renderDrained renders drainhttp_connections_drained_total: a series for
// every reason the tracker knows, 0 but for decision and proactive.
func (v metricsScalars) renderDrained(constLabels prometheus.Labels) string {
	var b strings.Builder
	for r := range DrainReason(numReasons) {
		n := 0
		switch r {
		case ReasonDecision:
			n = v.decision
		case ReasonProactive:
			n = v.proactive
		}
		b.WriteString(metricsSeries("drainhttp_connections_drained_total", n, constLabels, "reason", r.String()))
	}
	return b.String()
}

// render renders the expected exposition of the metrics in
// metricsScalarNames.
func (v metricsScalars) render(constLabels prometheus.Labels) string {
	l := constLabels
	return "# TYPE drainhttp_connections_accepted_total counter\n" +
		metricsSeries("drainhttp_connections_accepted_total", v.accepted, l) +
		"# TYPE drainhttp_connections_drained_total counter\n" +
		v.renderDrained(l) +
		"# TYPE drainhttp_connections_forced_closed_total counter\n" +
		metricsSeries("drainhttp_connections_forced_closed_total", v.forced, l) +
		"# TYPE drainhttp_goaways_sent_total counter\n" +
		metricsSeries("drainhttp_goaways_sent_total", v.goaways, l) +
		"# TYPE drainhttp_draining gauge\n" +
		metricsSeries("drainhttp_draining", v.draining, l) +
		"# TYPE drainhttp_drain_progress gauge\n" +
		metricsSeries("drainhttp_drain_progress", v.progress, l) +
		"# TYPE drainhttp_health_check_failed gauge\n" +
		metricsSeries("drainhttp_health_check_failed", v.hcFailed, l) +
		"# TYPE drainhttp_ready gauge\n" +
		metricsSeries("drainhttp_ready", v.ready, l)
}

// metricsExposition scrapes reg through promhttp.HandlerFor, as Prometheus
// would, and parses the text exposition with strict (legacy) name
// validation.
func metricsExposition(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).
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

func TestMetrics_ScriptedDrain(t *testing.T) {
	s := &Server{
		Handler:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		DrainTime:    200 * time.Millisecond,
		DrainTimeout: 5 * time.Second,
		Protocols:    metricsProtocols(),
	}
	reg := prometheus.NewPedanticRegistry()
	lbl := prometheus.Labels{"server": "public"}
	if err := s.RegisterMetrics(reg, lbl); err != nil {
		t.Fatal(err)
	}
	// A second registry, without labels: its histogram must observe too.
	reg2 := prometheus.NewRegistry()
	if err := s.RegisterMetrics(reg2, nil); err != nil {
		t.Fatal(err)
	}
	url := metricsServe(t, s)

	metricsCompare(t, reg, metricsConnections(lbl, nil)+metricsScalars{ready: 1}.render(lbl),
		append([]string{"drainhttp_connections"}, metricsScalarNames...)...)

	const h1Conns, h2cConns = 3, 2
	for range h1Conns {
		if resp := metricsGet(t, metricsTransport(t, "http/1.1"), url); resp.ProtoMajor != 1 || resp.Close {
			t.Fatalf("HTTP/1.1 response: %s, Close %v", resp.Proto, resp.Close)
		}
	}
	for range h2cConns {
		if resp := metricsGet(t, metricsTransport(t, "h2c"), url); resp.ProtoMajor != 2 {
			t.Fatalf("h2c response: %s", resp.Proto)
		}
	}
	metricsWaitFor(t, reg, h1Conns, "drainhttp_connections", "protocol", "http/1.1", "state", "idle")
	metricsWaitFor(t, reg, h2cConns, "drainhttp_connections", "protocol", "h2c", "state", "idle")

	metricsCompare(t, reg,
		metricsConnections(lbl, map[string]int{"http/1.1/idle": h1Conns, "h2c/idle": h2cConns})+
			metricsScalars{accepted: h1Conns + h2cConns, ready: 1}.render(lbl),
		append([]string{"drainhttp_connections"}, metricsScalarNames...)...)
	if got := metricsValue(t, reg, "drainhttp_connection_drain_duration_seconds"); got != 0 {
		t.Errorf("histogram count before the drain = %v, want 0", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*metricsWait)
	defer cancel()
	start := time.Now()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	took := time.Since(start)

	// Every connection was idle: each was drained by its proactive
	// callback, the HTTP/1.1 ones closed by the server once idle, the h2c
	// ones sent a GOAWAY. None was forced.
	const total = h1Conns + h2cConns
	// The histogram is observed just after the tracker reports the
	// connection gone, so Drain may return a moment before the last
	// observation.
	metricsWaitFor(t, reg, total, "drainhttp_connection_drain_duration_seconds")
	metricsWaitFor(t, reg2, total, "drainhttp_connection_drain_duration_seconds")
	metricsCompare(t, reg,
		metricsConnections(lbl, nil)+metricsScalars{accepted: total, proactive: total, goaways: h2cConns, draining: 1, progress: 1}.render(lbl),
		append([]string{"drainhttp_connections"}, metricsScalarNames...)...)
	metricsCompare(t, reg2,
		metricsConnections(nil, nil)+metricsScalars{accepted: total, proactive: total, goaways: h2cConns, draining: 1, progress: 1}.render(nil),
		append([]string{"drainhttp_connections"}, metricsScalarNames...)...)

	mfs := metricsExposition(t, reg)
	h := mfs["drainhttp_connection_drain_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != total {
		t.Errorf("histogram sample count = %d, want %d", h.GetSampleCount(), total)
	}
	// No connection took longer than the whole drain to close.
	if sum := h.GetSampleSum(); sum <= 0 || sum > total*took.Seconds() {
		t.Errorf("histogram sum = %vs, want in (0, %v]", sum, total*took.Seconds())
	}
}

func TestMetrics_ForcedCloseAtDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := &Server{
		// A handler that does not return: only its connection's deadline
		// ends it.
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}),
		DrainTime:    100 * time.Millisecond,
		DrainTimeout: 300 * time.Millisecond,
		Protocols:    metricsProtocols(),
	}
	reg := prometheus.NewPedanticRegistry()
	if err := s.RegisterMetrics(reg, nil); err != nil {
		t.Fatal(err)
	}
	url := metricsServe(t, s)

	tr := metricsTransport(t, "http/1.1")
	clientErr := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr, Timeout: metricsWait}).Get(url)
		if err == nil {
			resp.Body.Close()
		}
		clientErr <- err
	}()
	metricsWaitFor(t, reg, 1, "drainhttp_connections", "protocol", "http/1.1", "state", "active")

	ctx, cancel := context.WithTimeout(context.Background(), metricsWait)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := <-clientErr; err == nil {
		t.Error("the stuck request succeeded, want an error from its forced close")
	}
	metricsWaitFor(t, reg, 1, "drainhttp_connection_drain_duration_seconds")
	metricsCompare(t, reg,
		metricsConnections(nil, nil)+metricsScalars{accepted: 1, proactive: 1, forced: 1, draining: 1, progress: 1}.render(nil),
		append([]string{"drainhttp_connections"}, metricsScalarNames...)...)

	// The connection closed at its deadline, DrainTimeout after it was
	// marked: the one sample is in the buckets above 0.25 s.
	h := metricsExposition(t, reg)["drainhttp_connection_drain_duration_seconds"].GetMetric()[0].GetHistogram()
	if sum := h.GetSampleSum(); sum < s.DrainTimeout.Seconds() || sum > metricsWait.Seconds() {
		t.Errorf("drain duration = %vs, want at least DrainTimeout %v", sum, s.DrainTimeout)
	}
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() <= 0.25 && b.GetCumulativeCount() != 0 {
			t.Errorf("bucket le=%v holds %d samples, want 0", b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
}

func TestMetrics_HealthCheckFailDrainsByDecision(t *testing.T) {
	s := &Server{
		Handler:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		DrainTimeout: 5 * time.Second,
		Protocols:    metricsProtocols(),
	}
	reg := prometheus.NewPedanticRegistry()
	// Registering twice is idempotent: one set of metrics, one histogram,
	// each close observed once.
	lbl := prometheus.Labels{"server": "admin"}
	for range 2 {
		if err := s.RegisterMetrics(reg, lbl); err != nil {
			t.Fatal(err)
		}
	}
	url := metricsServe(t, s)

	h1, h2c := metricsTransport(t, "http/1.1"), metricsTransport(t, "h2c")
	metricsGet(t, h1, url)
	metricsGet(t, h2c, url)
	metricsWaitFor(t, reg, 1, "drainhttp_connections", "protocol", "h2c", "state", "idle")

	s.Manager().HealthCheckFail()
	metricsCompare(t, reg, metricsScalars{accepted: 2, hcFailed: 1}.render(lbl), metricsScalarNames...)

	// The next request on each connection is told to close: Connection:
	// close on HTTP/1.1, a GOAWAY on h2c.
	if resp := metricsGet(t, h1, url); !resp.Close {
		t.Error("HTTP/1.1 response without Connection: close")
	}
	metricsGet(t, h2c, url)
	metricsWaitFor(t, reg, 2, "drainhttp_connection_drain_duration_seconds")
	metricsCompare(t, reg,
		metricsConnections(lbl, nil)+metricsScalars{accepted: 2, decision: 2, goaways: 1, hcFailed: 1}.render(lbl),
		append([]string{"drainhttp_connections"}, metricsScalarNames...)...)

	s.Manager().HealthCheckOK()
	metricsCompare(t, reg, metricsScalars{accepted: 2, decision: 2, goaways: 1, ready: 1}.render(lbl), metricsScalarNames...)
}

func TestMetrics_RegisterMetricsErrors(t *testing.T) {
	s := new(Server)
	if err := s.RegisterMetrics(nil, nil); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("nil Registerer: %v, want ErrInvalidOption", err)
	}
	if err := (&Server{DrainTimeout: -1}).RegisterMetrics(prometheus.NewRegistry(), nil); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("invalid server options: %v, want ErrInvalidOption", err)
	}
	for _, labels := range []prometheus.Labels{{"reason": "x"}, {"protocol": "x"}, {"__name__": "x"}} {
		if err := s.RegisterMetrics(prometheus.NewRegistry(), labels); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("const labels %v: %v, want ErrInvalidOption", labels, err)
		}
	}

	// Every registration on one registry must use the same const label
	// names (Prometheus wants one label set per metric family), so several
	// servers there are told apart by the label values.
	reg := prometheus.NewPedanticRegistry()
	a := prometheus.Labels{"server": "a"}
	for range 2 {
		if err := s.RegisterMetrics(reg, a); err != nil {
			t.Errorf("registering: %v, want nil", err)
		}
	}
	// Through a wrapping Registerer, AlreadyRegisteredError still names our
	// collector: idempotent too.
	if err := s.RegisterMetrics(prometheus.WrapRegistererWith(a, reg), nil); err != nil {
		t.Errorf("registering through a wrapper: %v, want nil", err)
	}
	other := new(Server)
	var are prometheus.AlreadyRegisteredError
	if err := other.RegisterMetrics(reg, a); !errors.As(err, &are) || !strings.HasPrefix(err.Error(), "drainhttp: ") {
		t.Errorf("another server, same labels: %v, want a drainhttp error wrapping AlreadyRegisteredError", err)
	}
	if err := other.RegisterMetrics(reg, prometheus.Labels{"server": "b"}); err != nil {
		t.Errorf("another server, other label value: %v", err)
	}
	if err := other.RegisterMetrics(reg, nil); err == nil {
		t.Error("another server without the label names of the others: nil error")
	}
	if n, err := testutil.GatherAndCount(reg, "drainhttp_connections_accepted_total"); err != nil || n != 2 {
		t.Errorf("accepted series = %d (%v), want 2 (server=a, server=b)", n, err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestMetrics_ExpositionHasEveryMetricWithHelp(t *testing.T) {
	s := new(Server)
	reg := prometheus.NewPedanticRegistry()
	if err := s.RegisterMetrics(reg, prometheus.Labels{"server": "x"}); err != nil {
		t.Fatal(err)
	}
	mfs := metricsExposition(t, reg)
	want := map[string]dto.MetricType{
		"drainhttp_connections":                       dto.MetricType_GAUGE,
		"drainhttp_connections_accepted_total":        dto.MetricType_COUNTER,
		"drainhttp_connections_drained_total":         dto.MetricType_COUNTER,
		"drainhttp_connections_forced_closed_total":   dto.MetricType_COUNTER,
		"drainhttp_goaways_sent_total":                dto.MetricType_COUNTER,
		"drainhttp_draining":                          dto.MetricType_GAUGE,
		"drainhttp_drain_progress":                    dto.MetricType_GAUGE,
		"drainhttp_health_check_failed":               dto.MetricType_GAUGE,
		"drainhttp_ready":                             dto.MetricType_GAUGE,
		"drainhttp_connection_drain_duration_seconds": dto.MetricType_HISTOGRAM,
	}
	if len(mfs) != len(want) {
		t.Errorf("exposition has %d families, want %d", len(mfs), len(want))
	}
	for name, typ := range want {
		mf := mfs[name]
		if mf == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if mf.GetType() != typ {
			t.Errorf("%s type %v, want %v", name, mf.GetType(), typ)
		}
		if !strings.Contains(mf.GetHelp(), "Envoy") && name != "drainhttp_drain_progress" {
			t.Errorf("%s help %q does not name its Envoy counterpart", name, mf.GetHelp())
		}
		for _, m := range mf.GetMetric() {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == "server" && lp.GetValue() == "x"
			}
			if !found {
				t.Errorf("%s%v lacks the const label", name, m.GetLabel())
			}
		}
	}
	if n := len(mfs["drainhttp_connections"].GetMetric()); n != numProtocols*len(trackedStates) {
		t.Errorf("drainhttp_connections has %d series, want %d", n, numProtocols*len(trackedStates))
	}
	if n := len(mfs["drainhttp_connections_drained_total"].GetMetric()); n != numReasons {
		t.Errorf("drainhttp_connections_drained_total has %d series, want %d", n, numReasons)
	}
}
