package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// printHeader explains the scenario before it runs.
func printHeader(w io.Writer, cfg config) {
	fmt.Fprintf(w, `drainhttp demo: the same clients, the same signal, two servers.

  %d clients on 127.0.0.1 (HTTP/1.1 and h2c, each with a keep-alive connection):
  busy GET and POST clients, idle clients (a request every ~%v), streaming clients
  (%d lines over %v). A load balancer probes /ready every %v, at the same instants
  relative to the signal for both servers; at the first failed probe it takes the
  server out: clients finish their current request and send no new one. Any request
  that does not come back complete is a failure (refused = the listener was closed).

  After %v of traffic, the signal (what SIGTERM would trigger, called in-process):
    drainhttp: Server.Drain: /ready fails at once, the server keeps accepting for
               DrainTime=%v while it closes connections gracefully, then each
               connection gets DrainTimeout=%v.
    net/http:  /ready fails, then http.Server.Shutdown with a %v grace period (the
               same total), then Close: the textbook SIGTERM handler, no preStop delay.
`, cfg.clients, idleEvery, streamLines, streamLines*streamEvery, cfg.probeInterval,
		cfg.warmup, cfg.drainTime, cfg.drainTimeout, cfg.drainTime+cfg.drainTimeout)
}

// printResult prints what a run lost, with one example error per client
// kind and cause.
func printResult(w io.Writer, r *result) {
	fmt.Fprintf(w, "[%s] %d requests, %d ok, %d failed%s\n", r.server.name, r.requests, r.ok, r.failed(), kindsText(r.byKind))
	for _, k := range slices.Sorted(maps.Keys(r.examples)) {
		fmt.Fprintf(w, "[%s]   e.g. %s: %s\n", r.server.name, k, r.examples[k])
	}
}

func kindsText(byKind [numFailKinds]int64) string {
	var parts []string
	for k, n := range byKind {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", failKind(k), n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// printComparison prints the runs side by side.
func printComparison(w io.Writer, rs []*result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, f func(*result) string) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t", f(r))
		}
		fmt.Fprintln(tw)
	}
	num := func(f func(*result) int64) func(*result) string {
		return func(r *result) string { return fmt.Sprint(f(r)) }
	}
	row("", func(r *result) string { return r.server.name })
	row("on the signal", func(r *result) string { return r.server.action })
	row("requests", num(func(r *result) int64 { return r.requests }))
	row("ok", num(func(r *result) int64 { return r.ok }))
	row("failed", num((*result).failed))
	for k := range failKind(numFailKinds) {
		row("  "+k.String(), num(func(r *result) int64 { return r.byKind[k] }))
	}
	row("connections open at the signal", num(func(r *result) int64 { return r.atSignal.open }))
	row("connections accepted after it", num(func(r *result) int64 { return r.end.accepted - r.atSignal.accepted }))
	row("connections closed after it", num((*result).closedAfterSignal))
	row("load balancer noticed after", func(r *result) string {
		if r.lbDown < 0 {
			return "never"
		}
		return fmtDur(r.lbDown)
	})
	row("listener accepted for", func(r *result) string { return fmtDur(r.acceptedFor) })
	row("stop returned after", func(r *result) string { return fmtDur(r.stopTook) })
	row("drained (Stats: decision/proactive)", func(r *result) string {
		if r.stats == nil {
			return "-"
		}
		return fmt.Sprintf("%d/%d", r.stats.Drained["decision"], r.stats.Drained["proactive"])
	})
	row("force-closed at deadline (Stats)", func(r *result) string {
		if r.stats == nil {
			return "-"
		}
		return fmt.Sprint(r.stats.Forced)
	})
	tw.Flush()
}

// summaryLine is the drainhttp run's last line.
func summaryLine(r *result) string {
	return fmt.Sprintf("summary: requests=%d ok=%d failed=%d connections_drained=%d drain_seconds=%s",
		r.requests, r.ok, r.failed(), r.drained(), secs(r.stopTook))
}

// baselineLine is the net/http run's last line.
func baselineLine(r *result) string {
	other := r.failed() - r.byKind[failRefused] - r.byKind[failReset]
	return fmt.Sprintf("baseline: requests=%d ok=%d failed=%d connections_closed=%d shutdown_seconds=%s refused=%d reset=%d other=%d",
		r.requests, r.ok, r.failed(), r.closedAfterSignal(), secs(r.stopTook), r.byKind[failRefused], r.byKind[failReset], other)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
