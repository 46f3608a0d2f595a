package drainprom_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"maps"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/drainhttp/drainhttp/drainprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var (
	notReady      = drainhttp.PhaseNotReady
	window        = drainhttp.PhaseWindow
	closingLs     = drainhttp.PhaseClosingListeners
	closingConns  = drainhttp.PhaseClosingConns
	drained       = drainhttp.PhaseDrained
	closed        = drainhttp.PhaseClosed
	serving       = drainhttp.PhaseServing
	fullDrainPath = []drainhttp.Phase{serving, notReady, window, closingLs, closingConns, drained}
)

func TestCollector_ScriptedDrainCountsEveryConnection(t *testing.T) {
	s := &drainhttp.Server{
		Handler:      okHandler,
		DrainTime:    400 * time.Millisecond,
		DrainTimeout: 5 * time.Second,
		Protocols:    protocols(),
	}
	reg := prometheus.NewPedanticRegistry()
	lbl := prometheus.Labels{"server": "public"}
	if err := drainprom.Register(reg, s, lbl); err != nil {
		t.Fatal(err)
	}
	// A second registry, without labels: its own histogram observes too.
	reg2 := prometheus.NewRegistry()
	if err := drainprom.Register(reg2, s, nil); err != nil {
		t.Fatal(err)
	}
	compare(t, reg, s, lbl, want{ready: true})
	checkTimeline(t, reg, s, serving)

	url, served := serve(t, s)
	const h1Conns, h2cConns = 3, 2
	for range h1Conns {
		if resp := get(t, transport(t, "http/1.1"), url); resp.ProtoMajor != 1 || resp.Close {
			t.Fatalf("HTTP/1.1 response: %s, Close %v", resp.Proto, resp.Close)
		}
	}
	for range h2cConns {
		if resp := get(t, transport(t, "h2c"), url); resp.ProtoMajor != 2 {
			t.Fatalf("h2c response: %s", resp.Proto)
		}
	}
	// A connection goes idle just after its response is written.
	waitFor(t, reg, h1Conns, "drainhttp_connections", "protocol", "http/1.1", "state", "idle")
	waitFor(t, reg, h2cConns, "drainhttp_connections", "protocol", "h2c", "state", "idle")
	// Listeners is 1: the listener has accepted.
	compare(t, reg, s, lbl, want{
		open:     map[string]int{"http/1.1/idle": h1Conns, "h2c/idle": h2cConns},
		accepted: h1Conns + h2cConns, listeners: 1, ready: true,
	})
	if got := value(t, reg, "drainhttp_connection_drain_duration_seconds"); got != 0 {
		t.Errorf("histogram count before the drain = %v, want 0", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*socketWait)
	defer cancel()
	start := time.Now()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	took := time.Since(start)
	if err := served(); err != http.ErrServerClosed {
		t.Fatalf("Serve: %v, want http.ErrServerClosed", err)
	}

	// Every connection was idle: each was told to close by its proactive
	// callback, the HTTP/1.1 ones then closed by the server once idle long
	// enough, the h2c ones sent a GOAWAY. None was forced. drainhttp
	// counts and observes a connection before it forgets it, and Drain
	// returns once it has forgotten the last: no waiting here.
	const total = h1Conns + h2cConns
	final := want{accepted: total, drained: map[string]int{"proactive": total}, goaways: h2cConns,
		draining: true, phase: drained}
	compare(t, reg, s, lbl, final)
	compare(t, reg2, s, nil, final)
	for _, g := range []prometheus.Gatherer{reg, reg2} {
		if got := value(t, g, "drainhttp_drain_progress"); got != 1 {
			t.Errorf("drainhttp_drain_progress = %v after the drain, want 1", got)
		}
		if got := value(t, g, "drainhttp_connection_drain_duration_seconds"); got != total {
			t.Errorf("histogram count = %v, want %d", got, total)
		}
	}
	checkTimeline(t, reg, s, fullDrainPath...)

	h := exposition(t, reg)["drainhttp_connection_drain_duration_seconds"].GetMetric()[0].GetHistogram()
	// No connection took longer than the whole drain to close.
	if sum := h.GetSampleSum(); sum <= 0 || sum > total*took.Seconds() {
		t.Errorf("histogram sum = %vs, want in (0, %v]", sum, total*took.Seconds())
	}
}

// TestCollector_PhaseFollowsTheShutdown scrapes a server stopped in each
// phase that can be held, then at its end. No connection is involved: the
// phases are the server's own state, so every value is exact.
func TestCollector_PhaseFollowsTheShutdown(t *testing.T) {
	hour := time.Hour
	tests := []struct {
		name string
		// shutdownDelay and drainTime are the server's options.
		shutdownDelay, drainTime time.Duration
		start                    func(*drainhttp.Server) error
		wantPhase                drainhttp.Phase
		wantDraining             bool
		wantTimeline             []drainhttp.Phase
		wantProgress             func(float64) bool
		// finish, if set, ends the shutdown; wantEnd is the timeline then.
		finish  func(*drainhttp.Server) error
		wantEnd []drainhttp.Phase
	}{{
		name:          "ShutdownDelay",
		shutdownDelay: hour, drainTime: hour,
		start:        (*drainhttp.Server).StartDrain,
		wantPhase:    notReady,
		wantDraining: true,
		wantTimeline: []drainhttp.Phase{serving, notReady},
		wantProgress: func(p float64) bool { return p == 0 },
		finish:       drainNow,
		wantEnd:      fullDrainPath,
	}, {
		name:         "DrainWindow",
		drainTime:    hour,
		start:        (*drainhttp.Server).StartDrain,
		wantPhase:    window,
		wantDraining: true,
		wantTimeline: []drainhttp.Phase{serving, notReady, window},
		// The window has just started: a few milliseconds of an hour.
		wantProgress: func(p float64) bool { return p >= 0 && p < 0.01 },
		finish:       drainNow,
		wantEnd:      fullDrainPath,
	}, {
		name:         "Shutdown",
		start:        func(s *drainhttp.Server) error { return s.Shutdown(context.Background()) },
		wantPhase:    closed,
		wantTimeline: []drainhttp.Phase{serving, closingLs, closingConns, closed},
		wantProgress: func(p float64) bool { return p == 0 },
	}, {
		name:         "Close",
		start:        (*drainhttp.Server).Close,
		wantPhase:    closed,
		wantTimeline: []drainhttp.Phase{serving, closed},
		wantProgress: func(p float64) bool { return p == 0 },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &drainhttp.Server{ShutdownDelay: tt.shutdownDelay, DrainTime: tt.drainTime}
			reg := prometheus.NewPedanticRegistry()
			if err := drainprom.Register(reg, s, nil); err != nil {
				t.Fatal(err)
			}
			if err := tt.start(s); err != nil {
				t.Fatalf("start: %v", err)
			}
			compare(t, reg, s, nil, want{phase: tt.wantPhase, draining: tt.wantDraining})
			if p := value(t, reg, "drainhttp_drain_progress"); !tt.wantProgress(p) {
				t.Errorf("drainhttp_drain_progress = %v", p)
			}
			checkTimeline(t, reg, s, tt.wantTimeline...)
			if tt.finish == nil {
				return
			}
			if err := tt.finish(s); err != nil {
				t.Fatalf("finish: %v", err)
			}
			compare(t, reg, s, nil, want{phase: drained, draining: true})
			if p := value(t, reg, "drainhttp_drain_progress"); p != 1 {
				t.Errorf("drainhttp_drain_progress = %v at the end, want 1", p)
			}
			checkTimeline(t, reg, s, tt.wantEnd...)
		})
	}
}

// drainNow cuts a running drain short and waits for its end.
func drainNow(s *drainhttp.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), socketWait)
	defer cancel()
	return s.DrainNow(ctx)
}

func TestCollector_ForcedCloseAtDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := &drainhttp.Server{
		// A handler that does not return: only its connection's deadline
		// ends it.
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}),
		// Its proactive turn comes in the first quarter of the window,
		// well before the window ends (which would tell it for
		// "window_end").
		DrainTime:    400 * time.Millisecond,
		DrainTimeout: 300 * time.Millisecond,
		Protocols:    protocols(),
	}
	reg := prometheus.NewPedanticRegistry()
	if err := drainprom.Register(reg, s, nil); err != nil {
		t.Fatal(err)
	}
	url, served := serve(t, s)

	tr := transport(t, "http/1.1")
	clientErr := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr, Timeout: socketWait}).Get(url)
		if err == nil {
			resp.Body.Close()
		}
		clientErr <- err
	}()
	waitFor(t, reg, 1, "drainhttp_connections", "protocol", "http/1.1", "state", "active")

	ctx, cancel := context.WithTimeout(context.Background(), socketWait)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := <-clientErr; err == nil {
		t.Error("the stuck request succeeded, want an error from its forced close")
	}
	served()
	// Its turn in the proactive part of the window told it to close (it
	// would have closed after its response); it was still busy at the
	// deadline.
	compare(t, reg, s, nil, want{accepted: 1, drained: map[string]int{"proactive": 1}, forced: 1,
		draining: true, phase: drained})

	// The connection closed at its deadline, DrainTimeout after it was
	// told: the one sample is in the buckets above 0.25 s.
	h := exposition(t, reg)["drainhttp_connection_drain_duration_seconds"].GetMetric()[0].GetHistogram()
	if n := h.GetSampleCount(); n != 1 {
		t.Errorf("histogram count = %d, want 1", n)
	}
	if sum := h.GetSampleSum(); sum < s.DrainTimeout.Seconds() || sum > socketWait.Seconds() {
		t.Errorf("drain duration = %vs, want at least DrainTimeout %v", sum, s.DrainTimeout)
	}
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() <= 0.25 && b.GetCumulativeCount() != 0 {
			t.Errorf("bucket le=%v holds %d samples, want 0", b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
}

func TestCollector_HealthCheckFailClosesConnectionsWithoutDraining(t *testing.T) {
	s := &drainhttp.Server{Handler: okHandler, Protocols: protocols()}
	reg := prometheus.NewPedanticRegistry()
	// Registering twice is idempotent: one set of metrics, one histogram,
	// each close observed once.
	lbl := prometheus.Labels{"server": "admin"}
	for range 2 {
		if err := drainprom.Register(reg, s, lbl); err != nil {
			t.Fatal(err)
		}
	}
	url, _ := serve(t, s)

	h1, h2c := transport(t, "http/1.1"), transport(t, "h2c")
	get(t, h1, url)
	get(t, h2c, url)
	waitFor(t, reg, 1, "drainhttp_connections", "protocol", "http/1.1", "state", "idle")
	waitFor(t, reg, 1, "drainhttp_connections", "protocol", "h2c", "state", "idle")

	mgr, err := s.Manager()
	if err != nil {
		t.Fatal(err)
	}
	mgr.HealthCheckFail()
	compare(t, reg, s, lbl, want{open: map[string]int{"http/1.1/idle": 1, "h2c/idle": 1},
		accepted: 2, listeners: 1, hcFailed: true})

	// The next request on each connection is told to close: Connection:
	// close on HTTP/1.1, a GOAWAY on h2c. Both then close in their own
	// time.
	if resp := get(t, h1, url); !resp.Close {
		t.Error("HTTP/1.1 response without Connection: close")
	}
	get(t, h2c, url)
	waitFor(t, reg, 2, "drainhttp_connection_drain_duration_seconds")
	compare(t, reg, s, lbl, want{accepted: 2, drained: map[string]int{"health_check": 2}, goaways: 1,
		listeners: 1, hcFailed: true})

	mgr.HealthCheckOK()
	compare(t, reg, s, lbl, want{accepted: 2, drained: map[string]int{"health_check": 2}, goaways: 1,
		listeners: 1, ready: true})
}

func TestCollector_CountsTLSHandshakeErrors(t *testing.T) {
	cert, roots := testCert(t)
	s := &drainhttp.Server{
		Handler:   okHandler,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		// With an ErrorLog of its own, the server logs each handshake
		// error there (and counts it) instead of summarizing them later.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	reg := prometheus.NewPedanticRegistry()
	if err := drainprom.Register(reg, s, nil); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeTLS(l, "", "") }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("ServeTLS: %v, want http.ErrServerClosed", err)
		}
	})

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	if resp := get(t, tr, "https://"+l.Addr().String()+"/"); resp.ProtoMajor != 2 {
		t.Fatalf("TLS response: %s, want HTTP/2", resp.Proto)
	}
	waitFor(t, reg, 1, "drainhttp_connections", "protocol", "h2", "state", "idle")

	// A client that hangs up before its handshake.
	for range 2 {
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	waitFor(t, reg, 2, "drainhttp_tls_handshake_errors_total")
	// The failed connections were accepted, and are gone.
	compare(t, reg, s, nil, want{open: map[string]int{"h2/idle": 1}, accepted: 3, listeners: 1,
		tlsErrors: 2, ready: true})
}

// testCert returns a self-signed certificate for 127.0.0.1 and a pool
// that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "drainprom test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}

func TestCollector_ExpositionHasEveryMetricWithHelp(t *testing.T) {
	s := new(drainhttp.Server)
	reg := prometheus.NewPedanticRegistry()
	if err := drainprom.Register(reg, s, prometheus.Labels{"server": "x"}); err != nil {
		t.Fatal(err)
	}
	mfs := exposition(t, reg)
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
		"drainhttp_phase":                             dto.MetricType_GAUGE,
		"drainhttp_phase_start_time_seconds":          dto.MetricType_GAUGE,
		"drainhttp_listeners":                         dto.MetricType_GAUGE,
		"drainhttp_tls_handshake_errors_total":        dto.MetricType_COUNTER,
		"drainhttp_connection_drain_duration_seconds": dto.MetricType_HISTOGRAM,
	}
	if got := slices.Sorted(maps.Keys(mfs)); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Errorf("exposition has families %v, want %v", got, slices.Sorted(maps.Keys(want)))
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
		// Every help names its Envoy counterpart, or says there is none;
		// the progress has no Envoy notion to compare with.
		if mf.GetHelp() == "" || !strings.Contains(mf.GetHelp(), "Envoy") && name != "drainhttp_drain_progress" {
			t.Errorf("%s help %q does not name its Envoy counterpart", name, mf.GetHelp())
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, "server", "x") {
				t.Errorf("%s%v lacks the const label", name, m.GetLabel())
			}
		}
	}

	// The label values: every protocol and state pair, every reason (the
	// keys of Stats.Drained, exactly), every phase.
	labelValues := func(name, label string) []string {
		var vs []string
		for _, m := range mfs[name].GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					vs = append(vs, lp.GetValue())
				}
			}
		}
		slices.Sort(vs)
		return vs
	}
	var pairs, wantPairs []string
	for _, m := range mfs["drainhttp_connections"].GetMetric() {
		var proto, state string
		for _, lp := range m.GetLabel() {
			switch lp.GetName() {
			case "protocol":
				proto = lp.GetValue()
			case "state":
				state = lp.GetValue()
			}
		}
		pairs = append(pairs, proto+"/"+state)
	}
	for proto, byState := range s.Stats().Open {
		for state := range byState {
			wantPairs = append(wantPairs, proto+"/"+state)
		}
	}
	slices.Sort(pairs)
	slices.Sort(wantPairs)
	if !slices.Equal(pairs, wantPairs) || len(pairs) != len(connProtocols)*len(connStates) {
		t.Errorf("drainhttp_connections series %v, want %v (%d)", pairs, wantPairs, len(connProtocols)*len(connStates))
	}
	if got, want := labelValues("drainhttp_connections_drained_total", "reason"),
		slices.Sorted(maps.Keys(s.Stats().Drained)); !slices.Equal(got, want) || len(got) == 0 {
		t.Errorf("drainhttp_connections_drained_total reasons %v, want the keys of Stats.Drained %v", got, want)
	}
	var phaseNames []string
	for _, p := range allPhases() {
		phaseNames = append(phaseNames, p.String())
	}
	slices.Sort(phaseNames)
	if got := labelValues("drainhttp_phase", "phase"); !slices.Equal(got, phaseNames) {
		t.Errorf("drainhttp_phase phases %v, want %v", got, phaseNames)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
