package drainprom_test

import (
	"bufio"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/drainhttp/drainhttp/drainprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Register a Server's metrics before serving it, and serve the registry
// on an admin address that the drain does not close.
func ExampleRegister() {
	srv := &drainhttp.Server{
		Addr:      ":8080",
		Handler:   http.NotFoundHandler(),
		DrainTime: 30 * time.Second,
	}
	reg := prometheus.NewRegistry()
	if err := drainprom.Register(reg, srv, prometheus.Labels{"server": "public"}); err != nil {
		log.Fatal(err)
	}
	admin := http.NewServeMux()
	admin.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// go http.ListenAndServe("localhost:9090", admin)
	// srv.ListenAndServeUntilSignal()

	// What Prometheus scrapes before the drain:
	rec := httptest.NewRecorder()
	admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for sc := bufio.NewScanner(rec.Body); sc.Scan(); {
		if line := sc.Text(); strings.HasPrefix(line, "drainhttp_phase{") || strings.HasPrefix(line, "drainhttp_ready") {
			fmt.Println(line)
		}
	}
	// Output:
	// drainhttp_phase{phase="closed",server="public"} 0
	// drainhttp_phase{phase="closing_connections",server="public"} 0
	// drainhttp_phase{phase="closing_listeners",server="public"} 0
	// drainhttp_phase{phase="drained",server="public"} 0
	// drainhttp_phase{phase="not_ready",server="public"} 0
	// drainhttp_phase{phase="serving",server="public"} 1
	// drainhttp_phase{phase="window",server="public"} 0
	// drainhttp_ready{server="public"} 1
}

// A Collector is an ordinary prometheus.Collector: here it is registered
// with a prefix on every metric name.
func ExampleNewCollector() {
	srv := &drainhttp.Server{Handler: http.NotFoundHandler()}
	c, err := drainprom.NewCollector(srv, nil)
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	prometheus.WrapRegistererWithPrefix("myapp_", reg).MustRegister(c)

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(mfs), "families, the first", mfs[0].GetName())
	// Output:
	// 14 families, the first myapp_drainhttp_connection_drain_duration_seconds
}
