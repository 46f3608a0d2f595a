package main

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// logSink passes log lines to whoever shows them: the display of the run
// in progress. Lines that come while nobody listens are dropped. The zero
// value listens to nobody; it is safe for concurrent use.
type logSink struct {
	to atomic.Pointer[func(at time.Time, line string)]
}

// listen sends every line from now on to f, or drops them if f is nil.
func (s *logSink) listen(f func(at time.Time, line string)) {
	if f == nil {
		s.to.Store(nil)
		return
	}
	s.to.Store(&f)
}

func (s *logSink) send(at time.Time, line string) {
	if f := s.to.Load(); f != nil {
		(*f)(at, line)
	}
}

// logHandler is the slog.Handler of drainhttp's Logger in the demo. It
// writes each record at Info level or above as one line, for the live
// display to wrap and show among its events:
//
//	drainhttp: drain complete duration=6.2s drained.proactive=25 drained.decision=1 forced=0 goaways=12
//
// It writes attributes as key=value, like slog.TextHandler, with its
// dotted keys for groups, but without the time (the display shows it
// relative to the signal), and it leaves out the members of a group that
// are zero: drainhttp's drained group has one count per reason, nine in
// all, and a drain uses two or three. A group whose members are all zero
// is written group=0 ("drained=0": none drained yet).
type logHandler struct {
	sink   *logSink
	prefix string   // the open groups, "a.b."
	attrs  []string // formatted by WithAttrs
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	if r.Level != slog.LevelInfo {
		b.WriteString(r.Level.String() + " ")
	}
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a)
	}
	r.Attrs(func(a slog.Attr) bool {
		for _, s := range formatAttr(h.prefix, a) {
			b.WriteString(" " + s)
		}
		return true
	})
	h.sink.send(r.Time, b.String())
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = slices.Clone(h.attrs)
	for _, a := range as {
		h2.attrs = append(h2.attrs, formatAttr(h.prefix, a)...)
	}
	return &h2
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix += name + "."
	return &h2
}

// formatAttr formats a as key=value pairs, its key qualified by prefix;
// a group gives one pair per member that is not zero.
func formatAttr(prefix string, a slog.Attr) []string {
	v := a.Value.Resolve()
	if v.Kind() != slog.KindGroup {
		if a.Equal(slog.Attr{}) {
			return nil
		}
		return []string{prefix + a.Key + "=" + formatValue(v)}
	}
	inner := prefix
	if a.Key != "" {
		inner += a.Key + "."
	}
	var out []string
	for _, m := range v.Group() {
		if isZero(m.Value.Resolve()) {
			continue
		}
		out = append(out, formatAttr(inner, m)...)
	}
	if len(out) == 0 && a.Key != "" {
		return []string{prefix + a.Key + "=0"}
	}
	return out
}

func isZero(v slog.Value) bool {
	switch v.Kind() {
	case slog.KindInt64:
		return v.Int64() == 0
	case slog.KindUint64:
		return v.Uint64() == 0
	case slog.KindFloat64:
		return v.Float64() == 0
	case slog.KindDuration:
		return v.Duration() == 0
	}
	return false
}

// formatValue writes durations, and strings that are durations, as
// time.Duration does but to the millisecond ("6.205s", not
// "6.205285872s"), floats with three significant digits, and quotes strings
// that a space or an = would make ambiguous.
func formatValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindFloat64:
		return strconv.FormatFloat(v.Float64(), 'g', 3, 64)
	case slog.KindDuration:
		return v.Duration().Round(time.Millisecond).String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	}
	s := v.String()
	if d, err := time.ParseDuration(s); err == nil && d >= time.Millisecond {
		// drainhttp logs durations as strings, to the nanosecond.
		return d.Round(time.Millisecond).String()
	}
	if s == "" || strings.ContainsAny(s, " =\"\t\n") {
		return strconv.Quote(s)
	}
	return s
}
