package main

import (
	"log/slog"
	"testing"
	"time"
)

// logged returns the line h writes for one record logged by f.
func logged(t *testing.T, f func(*slog.Logger)) string {
	t.Helper()
	var sink logSink
	var lines []string
	sink.listen(func(_ time.Time, line string) { lines = append(lines, line) })
	f(slog.New(&logHandler{sink: &sink}))
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1: %q", len(lines), lines)
	}
	return lines[0]
}

// drained is a drained group as drainhttp logs it: one count per reason.
func drained(counts map[string]uint64) slog.Attr {
	var args []any
	for _, r := range drainReasons {
		args = append(args, r, counts[r])
	}
	return slog.Group("drained", args...)
}

func TestLogHandlerLeavesOutAGroupsZeroMembers(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(*slog.Logger)
		want string
	}{
		{"drain complete", func(l *slog.Logger) {
			l.Info("drainhttp: drain complete", "duration", "6.205285872s",
				drained(map[string]uint64{"decision": 1, "proactive": 25}), "forced", uint64(0), "goaways", uint64(12))
		}, "drainhttp: drain complete duration=6.205s drained.decision=1 drained.proactive=25 forced=0 goaways=12"},
		{"nothing drained yet", func(l *slog.Logger) {
			l.Info("drainhttp: draining", "progress", 0.8333333, "time_left", "999ms", drained(nil))
		}, "drainhttp: draining progress=0.833 time_left=999ms drained=0"},
		{"warning, quoted string, duration", func(l *slog.Logger) {
			l.Warn("drainhttp: second signal", "signal", "user defined signal 1", "after", 1500*time.Microsecond)
		}, `WARN drainhttp: second signal signal="user defined signal 1" after=2ms`},
		{"With and WithGroup", func(l *slog.Logger) {
			l.With("a", 1).WithGroup("g").Info("m", "b", 2, slog.Group("h", "c", 0, "d", 3))
		}, "m a=1 g.b=2 g.h.d=3"},
	} {
		if got := logged(t, tc.log); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestLogHandlerDropsDebugAndLinesNobodyListensTo(t *testing.T) {
	var sink logSink
	n := 0
	l := slog.New(&logHandler{sink: &sink})
	l.Info("before anyone listens")
	sink.listen(func(time.Time, string) { n++ })
	l.Debug("drainhttp: connection told to close")
	l.Info("counted")
	sink.listen(nil)
	l.Info("after")
	if n != 1 {
		t.Errorf("%d lines reached the display, want 1", n)
	}
}
