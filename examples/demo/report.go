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

// printHeader explains the scenario before it runs, wrapped to width.
func printHeader(w io.Writer, cfg config, width int) {
	para := func(text string) { fmt.Fprint(w, wrapString(text, width, "  ", "  ")) }
	// item is a paragraph under a name, with a hanging indent.
	item := func(name, text string) {
		fmt.Fprint(w, wrapString(text, width, fmt.Sprintf("    %-10s ", name), strings.Repeat(" ", 15)))
	}
	fmt.Fprint(w, wrapString("drainhttp demo: the same clients, the same signal, two servers.", width, "", ""))
	fmt.Fprintln(w)
	para(fmt.Sprintf("%d clients on 127.0.0.1 (HTTP/1.1 and h2c, each with a keep-alive connection): "+
		"busy GET and POST clients, idle clients (a request every ~%v) and streaming clients (%d lines over %v).",
		cfg.clients, idleEvery, streamLines, streamLines*streamEvery))
	para(fmt.Sprintf("A load balancer probes /ready every %v, at the same instants relative to the signal for both servers, "+
		"over a keep-alive connection of its own: each server has one connection more than there are clients. "+
		"At the first failed probe it takes the server out: clients finish their current request and send no new one. "+
		"Any request that does not come back complete is a failure (refused: the listener was closed).",
		cfg.probeInterval))
	fmt.Fprintln(w)
	para(fmt.Sprintf("After %v of traffic, the signal (what SIGTERM would trigger, called in-process):", cfg.warmup))
	item("drainhttp:", fmt.Sprintf("Server.Drain: /ready fails at once, the server keeps accepting for DrainTime=%v "+
		"while it closes connections gracefully, then each connection gets DrainTimeout=%v.", cfg.drainTime, cfg.drainTimeout))
	item("net/http:", fmt.Sprintf("/ready fails, then http.Server.Shutdown with a %v grace period (the same total), "+
		"then Close: the textbook SIGTERM handler, no preStop delay.", cfg.drainTime+cfg.drainTimeout))
}

// printResult prints what a run lost, with one example error per client
// kind and cause, wrapped to width.
func printResult(w io.Writer, r *result, width int) {
	line := fmt.Sprintf("[%s] %d requests, %d ok, %d failed", r.server.name, r.requests, r.ok, r.failed())
	if k := kindsText(r.byKind); k != "" {
		line += ": " + k
	}
	fmt.Fprint(w, wrapString(line, width, "", "    "))
	for _, k := range slices.Sorted(maps.Keys(r.examples)) {
		fmt.Fprint(w, wrapString("e.g. "+k+": "+r.examples[k], width, "    ", "        "))
	}
}

// kindsText lists the failures by cause, "refused 64, reset 2"; empty if
// there are none.
func kindsText(byKind [numFailKinds]int64) string {
	var parts []string
	for k, n := range byKind {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", failKind(k), n))
		}
	}
	return strings.Join(parts, ", ")
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
	row("  the load balancer's", num(func(r *result) int64 { return r.atSignal.probe }))
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
	if len(rs) > 0 && rs[0].stats != nil {
		drained := rs[0].stats.Drained
		row("drained (drainhttp.Stats)", func(r *result) string {
			if r.stats == nil {
				return "-"
			}
			return fmt.Sprint(r.drained())
		})
		for i, reason := range drainReasons {
			if i < 3 || drained[reason] > 0 {
				row("  "+reason, func(r *result) string {
					if r.stats == nil {
						return "-"
					}
					return fmt.Sprint(r.stats.Drained[reason])
				})
			}
		}
	}
	row("forced closed (drainhttp.Stats)", func(r *result) string {
		if r.stats == nil {
			return "-"
		}
		return fmt.Sprint(r.stats.Forced)
	})
	tw.Flush()
}

// summaryLine is the drainhttp run's line for scripts; it fits 80
// columns up to a million requests.
func summaryLine(r *result) string {
	return fmt.Sprintf("summary: requests=%d failed=%d drained=%d seconds=%s",
		r.requests, r.failed(), r.drained(), secs(r.stopTook))
}

// baselineLine is the net/http run's line for scripts, its failures by
// cause (other is eof, timeout, status and other).
func baselineLine(r *result) string {
	other := r.failed() - r.byKind[failRefused] - r.byKind[failReset]
	return fmt.Sprintf("baseline: requests=%d failed=%d refused=%d reset=%d other=%d seconds=%s",
		r.requests, r.failed(), r.byKind[failRefused], r.byKind[failReset], other, secs(r.stopTook))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
