package drainprom

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/drainhttp/drainhttp"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. Every one starts with drainhttp_, as before the metrics
// moved out of the drainhttp package, so that dashboards and alerts keep
// working; NewCollector says what each means.
const (
	metricConnections      = "drainhttp_connections"
	metricAccepted         = "drainhttp_connections_accepted_total"
	metricDrained          = "drainhttp_connections_drained_total"
	metricForced           = "drainhttp_connections_forced_closed_total"
	metricGoAways          = "drainhttp_goaways_sent_total"
	metricDraining         = "drainhttp_draining"
	metricProgress         = "drainhttp_drain_progress"
	metricHealthCheck      = "drainhttp_health_check_failed"
	metricReady            = "drainhttp_ready"
	metricPhase            = "drainhttp_phase"
	metricPhaseStart       = "drainhttp_phase_start_time_seconds"
	metricListeners        = "drainhttp_listeners"
	metricTLSErrors        = "drainhttp_tls_handshake_errors_total"
	metricDrainDurationSec = "drainhttp_connection_drain_duration_seconds"
)

// phases are the values of drainhttp.Phase, in order: every one has a
// drainhttp_phase series. drainhttp exports the constants but no list of
// them, so the list is kept here;
// TestCollector_ExpositionHasEveryMetricWithHelp fails if drainhttp gains
// a phase this list lacks.
var phases = [...]drainhttp.Phase{
	drainhttp.PhaseServing,
	drainhttp.PhaseNotReady,
	drainhttp.PhaseWindow,
	drainhttp.PhaseClosingListeners,
	drainhttp.PhaseClosingConns,
	drainhttp.PhaseDrained,
	drainhttp.PhaseClosed,
}

// drainDurationBuckets are the upper bounds, in seconds, of the
// drainhttp_connection_drain_duration_seconds histogram. An HTTP/2
// connection sent a two-phase GOAWAY closes within a round trip and a few
// tens of milliseconds; an idle HTTP/1.1 connection is closed once it has
// been idle for at least 1 s (drainhttp waits that long to dodge the
// keep-alive race); a busy one closes when its requests end; a stuck one
// at DrainTimeout (drainhttp.DefaultDrainTimeout is 5 s; long-poll and
// streaming services often use 30 to 120 s). The buckets cover that range
// with the usual 1-2.5-5 steps; anything longer lands in +Inf.
func drainDurationBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
}

// Collector is a prometheus.Collector of one drainhttp.Server's metrics.
// The zero value is not usable: make one with NewCollector. It is safe for
// concurrent use: a registry may gather it while the server serves and
// drains.
type Collector struct {
	s *drainhttp.Server

	connections   *prometheus.Desc
	accepted      *prometheus.Desc
	drained       *prometheus.Desc
	forced        *prometheus.Desc
	goaways       *prometheus.Desc
	draining      *prometheus.Desc
	progress      *prometheus.Desc
	healthCheck   *prometheus.Desc
	ready         *prometheus.Desc
	phase         *prometheus.Desc
	phaseStart    *prometheus.Desc
	listeners     *prometheus.Desc
	tlsErrors     *prometheus.Desc
	drainDuration prometheus.Histogram

	// stopObserving unregisters the histogram's OnConnDrained callback.
	stopObserving func()
}

// NewCollector returns the metrics of s, every one carrying constLabels
// (nil for none; use one such as {"server": "public"} to tell apart
// several Servers on one registry):
//
//   - drainhttp_connections{protocol, state} (gauge): open connections by
//     protocol ("http/1.1", "h2", "h2c") and http.ConnState ("new",
//     "active", "idle", "hijacked"), Stats.Open; every pair is present.
//     Envoy: downstream_cx_active, downstream_cx_http1_active,
//     downstream_cx_http2_active.
//   - drainhttp_connections_accepted_total (counter): connections
//     accepted, Stats.Accepted. Envoy: downstream_cx_total.
//   - drainhttp_connections_drained_total{reason} (counter): connections
//     that closed after being told to close, by reason: the label values
//     are exactly the keys of Stats.Drained ("decision", "proactive",
//     "window_end", "health_check", "max_age", "max_requests",
//     "goaway_chance", "shutdown", "close"), every one present from the
//     start. Envoy: downstream_cx_drain_close,
//     downstream_cx_max_duration_reached and
//     downstream_cx_max_requests_reached.
//   - drainhttp_connections_forced_closed_total (counter): drained
//     connections the server closed while they were busy, at their
//     DrainTimeout deadline or because a drain was cut short,
//     Stats.Forced; they are also counted in
//     drainhttp_connections_drained_total. Envoy has none: it does not
//     enforce drain_timeout on stuck streams (envoy#34384).
//   - drainhttp_goaways_sent_total (counter): HTTP/2 connections sent a
//     GOAWAY, Stats.GoAways. Envoy: http2.goaway_sent.
//   - drainhttp_draining (gauge, 0 or 1): 1 once a drain has started
//     (Drain, DrainNow, DrainAfterHandoff, StartDrain, or a drain sequence
//     started on the server's Manager); it stays 1. Shutdown and Close
//     alone are not drains. Envoy: the opposite of server.live.
//   - drainhttp_drain_progress (gauge, 0 to 1): the elapsed fraction of
//     the drain window, Status.Drain.Progress.
//   - drainhttp_health_check_failed (gauge, 0 or 1): the Manager's health
//     check is failed, Status.Drain.HealthCheckFailed. Envoy: POST
//     /healthcheck/fail, which Envoy reports as server.state DRAINING.
//   - drainhttp_ready (gauge, 0 or 1): what ReadyHandler answers,
//     Status.Ready. Envoy: server.state LIVE.
//   - drainhttp_phase{phase} (gauge, 0 or 1): 1 for the server's current
//     phase (Status.Phase), 0 for every other; the label values are
//     drainhttp.Phase.String ("serving", "not_ready", "window",
//     "closing_listeners", "closing_connections", "drained", "closed"),
//     every one present from the start. Envoy: server.state.
//   - drainhttp_phase_start_time_seconds{phase} (gauge): when the server
//     entered each phase, in seconds since the Unix epoch on the server's
//     clock, from Status.Timeline; a phase not entered yet has no series
//     (a phase is entered at most once). Envoy has none.
//   - drainhttp_listeners (gauge): listeners the server accepts on,
//     Stats.Listeners. Envoy: listener_manager.total_listeners_active.
//   - drainhttp_tls_handshake_errors_total (counter): failed TLS
//     handshakes, Stats.TLSHandshakeErrors. Envoy: ssl.connection_error.
//   - drainhttp_connection_drain_duration_seconds (histogram): for each
//     connection counted in drainhttp_connections_drained_total that
//     closed since NewCollector, the time from being told to close to
//     closed (DrainedConn.Draining), with buckets from 5 ms to 120 s.
//     Envoy has none (its downstream_cx_length_ms covers a connection's
//     whole life).
//
// Everything but the histogram is read from one s.Status snapshot each
// time the collector is gathered. The histogram is observed through
// s.OnConnDrained from now on, for the server's life, whether or not the
// collector is registered anywhere.
//
// NewCollector validates the server's options, and so freezes them, like
// every drainhttp.Server method: set every field first. It returns an
// error wrapping drainhttp.ErrInvalidOption if s is nil, if its options
// are invalid, or if constLabels is not a valid label set (for example if
// it uses one of the label names protocol, state, reason or phase).
func NewCollector(s *drainhttp.Server, constLabels prometheus.Labels) (*Collector, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: drainprom: nil Server", drainhttp.ErrInvalidOption)
	}
	if _, err := s.Manager(); err != nil {
		return nil, err
	}
	c := newCollector(s, constLabels)
	// A Desc holds its own error (a bad label name, a clash with a
	// variable label), which only Register reports: register on a
	// throwaway registry to tell a bad label set apart from a conflict on
	// the caller's.
	if err := prometheus.NewPedanticRegistry().Register(c); err != nil {
		return nil, fmt.Errorf("%w: drainprom: const labels %v: %v", drainhttp.ErrInvalidOption, constLabels, err)
	}
	c.stopObserving = s.OnConnDrained(func(d drainhttp.DrainedConn) {
		c.drainDuration.Observe(d.Draining.Seconds())
	})
	return c, nil
}

func newCollector(s *drainhttp.Server, constLabels prometheus.Labels) *Collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, constLabels)
	}
	reasons := slices.Sorted(maps.Keys(s.Stats().Drained))
	phaseNames := make([]string, len(phases))
	for i, p := range phases {
		phaseNames[i] = p.String()
	}
	return &Collector{
		s: s,
		connections: desc(metricConnections,
			"Open connections by protocol (http/1.1, h2, h2c) and http.ConnState (new, active, idle, hijacked). "+
				"Envoy: downstream_cx_active.", "protocol", "state"),
		accepted: desc(metricAccepted,
			"Connections accepted. Envoy: downstream_cx_total."),
		drained: desc(metricDrained,
			"Connections closed after being told to close, by reason ("+strings.Join(reasons, ", ")+"). "+
				"Envoy: downstream_cx_drain_close, downstream_cx_max_duration_reached, downstream_cx_max_requests_reached.",
			"reason"),
		forced: desc(metricForced,
			"Drained connections the server closed while busy, at their drain deadline or when a drain was cut short; "+
				"also counted in "+metricDrained+". Envoy has none: it does not enforce drain_timeout (envoy#34384)."),
		goaways: desc(metricGoAways,
			"HTTP/2 connections sent a GOAWAY. Envoy: http2.goaway_sent."),
		draining: desc(metricDraining,
			"1 once the server has started draining, else 0. Envoy: the opposite of server.live."),
		progress: desc(metricProgress,
			"Elapsed fraction of the drain window, from 0 before the drain to 1 once it is complete."),
		healthCheck: desc(metricHealthCheck,
			"1 while the health check is failed, else 0. Envoy: POST /healthcheck/fail (server.state DRAINING)."),
		ready: desc(metricReady,
			"1 while the server takes new traffic (its ready handler answers 200), else 0. Envoy: server.state LIVE."),
		phase: desc(metricPhase,
			"1 for the server's current shutdown phase, 0 for the others ("+strings.Join(phaseNames, ", ")+"). "+
				"Envoy: server.state.", "phase"),
		phaseStart: desc(metricPhaseStart,
			"When the server entered each shutdown phase it has entered, in seconds since the Unix epoch. Envoy has none.",
			"phase"),
		listeners: desc(metricListeners,
			"Listeners the server accepts on. Envoy: listener_manager.total_listeners_active."),
		tlsErrors: desc(metricTLSErrors,
			"Failed TLS handshakes. Envoy: ssl.connection_error."),
		drainDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: metricDrainDurationSec,
			Help: "Time from a connection being told to close to its close, for connections counted in " +
				metricDrained + ". Envoy has none.",
			ConstLabels: constLabels,
			Buckets:     drainDurationBuckets(),
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.accepted, c.drained, c.forced, c.goaways,
		c.draining, c.progress, c.healthCheck, c.ready, c.phase, c.phaseStart, c.listeners, c.tlsErrors} {
		ch <- d
	}
	c.drainDuration.Describe(ch)
}

// Collect implements prometheus.Collector. It takes one Server.Status
// snapshot and makes every metric but the histogram from it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	conns := st.Connections
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	for proto, byState := range conns.Open {
		for state, n := range byState {
			gauge(c.connections, float64(n), proto, state)
		}
	}
	counter(c.accepted, conns.Accepted)
	for reason, n := range conns.Drained {
		counter(c.drained, n, reason)
	}
	counter(c.forced, conns.Forced)
	counter(c.goaways, conns.GoAways)

	// Drain (and DrainAfterHandoff) enter PhaseNotReady (PhaseWindow) as
	// they start; Shutdown and Close enter neither. The Manager's own
	// Draining covers a drain sequence started on it directly.
	draining := st.Drain.Draining
	for _, pc := range st.Timeline {
		draining = draining || pc.Phase == drainhttp.PhaseNotReady || pc.Phase == drainhttp.PhaseWindow
	}
	gauge(c.draining, boolValue(draining))
	gauge(c.progress, st.Drain.Progress)
	gauge(c.healthCheck, boolValue(st.Drain.HealthCheckFailed))
	gauge(c.ready, boolValue(st.Ready))

	for _, p := range phases {
		gauge(c.phase, boolValue(p == st.Phase), p.String())
	}
	for _, pc := range st.Timeline {
		gauge(c.phaseStart, float64(pc.At.UnixNano())/1e9, pc.Phase.String())
	}
	gauge(c.listeners, float64(conns.Listeners))
	counter(c.tlsErrors, conns.TLSHandshakeErrors)

	c.drainDuration.Collect(ch)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
