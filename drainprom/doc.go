// Package drainprom exports a drainhttp.Server's connection counters,
// shutdown phase and drain durations as Prometheus metrics.
//
// It is a separate package so that a program that does not want metrics
// does not link Prometheus: drainhttp itself does not import it. This
// package depends on
// github.com/prometheus/client_golang/prometheus and on drainhttp's
// exported API alone (Server.Status, Server.Stats, Server.OnConnDrained and
// Server.Manager), so that a third party could have written it.
//
// Register puts a server's metrics on a registry:
//
//	reg := prometheus.NewRegistry()
//	if err := drainprom.Register(reg, srv, nil); err != nil {
//		log.Fatal(err)
//	}
//	admin.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// and NewCollector makes the same metrics as a prometheus.Collector to
// register, wrap or gather by other means. The metrics are listed at
// NewCollector.
//
// Every metric but one is made from one Server.Status snapshot when the
// registry is gathered: serving a request costs nothing more with metrics
// than without. The exception is the drain duration histogram, which is
// observed as each drained connection closes (one histogram observation,
// in the goroutine that closes the connection).
//
// NOTES: the counters count from the server's start, the histogram from
// the call to NewCollector (or Register): register before serving for the
// two to agree. A Collector observes its histogram for the server's life,
// even after it has been unregistered.
package drainprom
