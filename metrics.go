package drainhttp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. Every one starts with drainhttp_; see RegisterMetrics for
// what each means.
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
	metricDrainDurationSec = "drainhttp_connection_drain_duration_seconds"
)

// drainDurationBuckets are the upper bounds, in seconds, of the
// drainhttp_connection_drain_duration_seconds histogram. An idle
// connection that is drained proactively closes within milliseconds (HTTP/1.1
// after idleCloseDelay, 250 ms, of idleness), an HTTP/2 connection about 1 s
// after its GOAWAY (x/net's goAwayTimeout), a busy one when its requests end,
// and a stuck one at DrainTimeout (DefaultDrainTimeout is 5 s; long-poll and
// streaming services often use 30 to 120 s). The buckets cover that range with
// the usual 1-2.5-5 steps; anything longer lands in +Inf.
func drainDurationBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
}

// RegisterMetrics registers the server's Prometheus metrics on reg, every
// one carrying constLabels (nil for none; use one such as
// {"server": "public"} to tell apart several Servers on one registry):
//
//   - drainhttp_connections{protocol, state} (gauge): open connections by
//     protocol ("http/1.1", "h2", "h2c") and http.ConnState ("new",
//     "active", "idle", "hijacked"). Envoy: downstream_cx_active,
//     downstream_cx_http1_active, downstream_cx_http2_active.
//   - drainhttp_connections_accepted_total (counter): connections accepted.
//     Envoy: downstream_cx_total.
//   - drainhttp_connections_drained_total{reason} (counter): connections
//     that closed after being told to drain, by reason, DrainReason.String:
//     "decision", "proactive", "max_age", "max_requests", "goaway_chance";
//     every reason is present from the start. Envoy:
//     downstream_cx_drain_close, downstream_cx_max_duration_reached and
//     downstream_cx_max_requests_reached.
//   - drainhttp_connections_forced_closed_total (counter): drained
//     connections the server had to close itself, at their DrainTimeout
//     deadline or because a drain was cut short; they are also counted in
//     drainhttp_connections_drained_total. Envoy has none: it does not
//     enforce drain_timeout on stuck streams (envoy#34384).
//   - drainhttp_goaways_sent_total (counter): HTTP/2 connections sent a
//     GOAWAY. Envoy: http2.goaway_sent.
//   - drainhttp_draining (gauge, 0 or 1): 1 once Drain has been called or a
//     drain sequence has reached the server's Manager; it stays 1. Envoy:
//     the opposite of server.live.
//   - drainhttp_drain_progress (gauge, 0 to 1): the elapsed fraction of the
//     drain window, Manager.Progress.
//   - drainhttp_health_check_failed (gauge, 0 or 1): the Manager's health
//     check is failed. Envoy: POST /healthcheck/fail, which Envoy reports
//     as server.state DRAINING.
//   - drainhttp_ready (gauge, 0 or 1): Server.Ready, what ReadyHandler
//     answers. Envoy: server.state LIVE.
//   - drainhttp_connection_drain_duration_seconds (histogram): for each
//     connection counted in drainhttp_connections_drained_total, the time
//     from being told to drain to closed, with buckets from 5 ms to 120 s.
//     Envoy has none (its downstream_cx_length_ms covers a connection's
//     whole life).
//
// Everything but the histogram is read from the server's own counters when
// reg is gathered, so serving a request costs nothing more with metrics
// than without. The histogram is observed when a drained connection closes.
// The counters count from the server's start; the histogram only from the
// call to RegisterMetrics, so register before serving for the two to agree.
//
// Like promhttp.InstrumentMetricHandler, RegisterMetrics is idempotent:
// registering the same Server on the same registry with the same
// constLabels again does nothing and returns nil. Registering a different
// Server with the same constLabels on that registry fails with an error
// wrapping prometheus.AlreadyRegisteredError. Several Servers share a
// registry by using the same const label names with different values
// (Prometheus wants one set of label names per metric family, so mixing
// {"server": "a"} with nil on one registry fails). The same Server may be
// registered on several registries; each registration gets its own
// histogram, and stays live (its histogram observing) for the server's
// life, even if it is unregistered from reg.
//
// Like the serve methods, RegisterMetrics validates the server's options
// and freezes them: set every field first. It returns an error wrapping
// ErrInvalidOption if reg is nil, if constLabels is not a valid label set
// (for example if it uses one of the label names protocol, state or
// reason) or if the server's options are invalid, and the error from
// reg.Register, prefixed "drainhttp: ", if that fails otherwise. It is
// safe to call at any time, concurrently with serving.
func (s *Server) RegisterMetrics(reg prometheus.Registerer, constLabels prometheus.Labels) error {
	if reg == nil {
		return fmt.Errorf("%w: RegisterMetrics with a nil Registerer", ErrInvalidOption)
	}
	if err := s.init(); err != nil {
		return err
	}
	mc := newMetricsCollector(s, constLabels)
	// Check the descriptors (label names, values, clashes) on a throwaway
	// registry, so that a bad label set is told apart from a conflict on
	// reg.
	if err := prometheus.NewPedanticRegistry().Register(mc); err != nil {
		return fmt.Errorf("%w: metrics const labels %v: %v", ErrInvalidOption, constLabels, err)
	}
	if err := reg.Register(mc); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(*metricsCollector); ok && old.s == s {
				return nil
			}
		}
		return fmt.Errorf("drainhttp: registering metrics: %w", err)
	}
	t := s.tracker
	t.mu.Lock()
	prev := t.onDone
	t.onDone = func(c *trackedConn, drainedFor time.Duration) {
		if prev != nil {
			prev(c, drainedFor)
		}
		mc.drainDuration.Observe(drainedFor.Seconds())
	}
	t.mu.Unlock()
	return nil
}

// metricsCollector is the prometheus.Collector of one RegisterMetrics call:
// const metrics made from the tracker's and Manager's state at each scrape,
// and the drain duration histogram.
type metricsCollector struct {
	s *Server

	connections   *prometheus.Desc
	accepted      *prometheus.Desc
	drained       *prometheus.Desc
	forced        *prometheus.Desc
	goaways       *prometheus.Desc
	draining      *prometheus.Desc
	progress      *prometheus.Desc
	healthCheck   *prometheus.Desc
	ready         *prometheus.Desc
	drainDuration prometheus.Histogram
}

func newMetricsCollector(s *Server, constLabels prometheus.Labels) *metricsCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, constLabels)
	}
	return &metricsCollector{
		s: s,
		connections: desc(metricConnections,
			"Open connections by protocol (http/1.1, h2, h2c) and http.ConnState (new, active, idle, hijacked). "+
				"Envoy: downstream_cx_active.", "protocol", "state"),
		accepted: desc(metricAccepted,
			"Connections accepted. Envoy: downstream_cx_total."),
		drained: desc(metricDrained,
			"Connections closed after being told to drain, by reason ("+strings.Join(reasonName[:], ", ")+"). "+
				"Envoy: downstream_cx_drain_close, downstream_cx_max_duration_reached, downstream_cx_max_requests_reached.", "reason"),
		forced: desc(metricForced,
			"Drained connections force-closed by the server at their drain deadline or when a drain was cut short; "+
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
		drainDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: metricDrainDurationSec,
			Help: "Time from a connection being told to drain to its close, for connections counted in " +
				metricDrained + ". Envoy has none.",
			ConstLabels: constLabels,
			Buckets:     drainDurationBuckets(),
		}),
	}
}

// Describe implements prometheus.Collector.
func (m *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.connections, m.accepted, m.drained, m.forced, m.goaways,
		m.draining, m.progress, m.healthCheck, m.ready} {
		ch <- d
	}
	m.drainDuration.Describe(ch)
}

// Collect implements prometheus.Collector. It reads the tracker's atomic
// counters and one Manager.Status snapshot; it takes no tracker lock.
func (m *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s, t := m.s, m.s.tracker
	for p := range Protocol(numProtocols) {
		for _, state := range trackedStates {
			ch <- prometheus.MustNewConstMetric(m.connections, prometheus.GaugeValue,
				float64(t.open[p][state].Load()), p.String(), state.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(m.accepted, prometheus.CounterValue, float64(t.accepted.Load()))
	for r := range DrainReason(numReasons) {
		ch <- prometheus.MustNewConstMetric(m.drained, prometheus.CounterValue, float64(t.drained[r].Load()), r.String())
	}
	ch <- prometheus.MustNewConstMetric(m.forced, prometheus.CounterValue, float64(t.forced.Load()))
	ch <- prometheus.MustNewConstMetric(m.goaways, prometheus.CounterValue, float64(t.goaways.Load()))

	st := s.mgr.Status()
	ch <- prometheus.MustNewConstMetric(m.draining, prometheus.GaugeValue, boolValue(st.Draining || s.drainStarted.Load()))
	ch <- prometheus.MustNewConstMetric(m.progress, prometheus.GaugeValue, st.Progress)
	ch <- prometheus.MustNewConstMetric(m.healthCheck, prometheus.GaugeValue, boolValue(st.HealthCheckFailed))
	ch <- prometheus.MustNewConstMetric(m.ready, prometheus.GaugeValue, boolValue(s.Ready()))
	m.drainDuration.Collect(ch)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
