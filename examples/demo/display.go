package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// newDisplay returns progress bars if stdout is a terminal, laid out in its
// width, and a few plain lines per second otherwise (CI, pipes, tests),
// in defaultWidth columns.
func newDisplay(stdout io.Writer, cfg config, srv *server) display {
	if isTerm, width := terminal(stdout); isTerm {
		return &barDisplay{out: stdout, cfg: cfg, srv: srv, width: textWidth(width)}
	}
	return &lineDisplay{out: stdout, cfg: cfg, srv: srv, width: defaultWidth}
}

// lineDisplay prints the status every second, and each event as it
// happens. The sampler and the scenario both print: mu orders their lines.
type lineDisplay struct {
	mu    sync.Mutex
	out   io.Writer
	cfg   config
	srv   *server
	width int
	last  time.Duration
	seen  bool
}

func (d *lineDisplay) start(time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprint(d.out, startText(d.srv, d.width))
}

func (d *lineDisplay) update(f *frame) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen && f.t-d.last < time.Second {
		return
	}
	d.seen, d.last = true, f.t
	parts := []string{windowName(d.srv) + " " + phaseText(f, d.cfg, d.srv)}
	parts = append(parts, connParts(f)...)
	parts = append(parts, requestText(f), "load balancer "+lbText(f))
	if f.stats != nil {
		parts = append(parts, drainedText(f.stats), forcedText(f.stats))
	}
	first := fmt.Sprintf("[%s] %s ", d.srv.name, fmtT(f.t))
	for _, l := range pack(parts, "; ", d.width, first, "    ") {
		fmt.Fprintln(d.out, l)
	}
}

func (d *lineDisplay) event(t time.Duration, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprint(d.out, eventText(t, msg, d.width))
}

func (d *lineDisplay) finish() {}

// barDisplay draws github.com/vbauerster/mpb bars: the warm-up, the drain
// window (or Shutdown's grace period), and lines for connections, requests
// and the load balancer, each of them at most width columns wide.
type barDisplay struct {
	out      io.Writer
	cfg      config
	srv      *server
	width    int
	forceTTY bool // for tests: draw on a writer that is not a terminal

	p      *mpb.Progress
	warm   *mpb.Bar
	window *mpb.Bar
	lines  []*mpb.Bar
	frame  atomic.Pointer[frame]
}

// Layout of the bar display: the labels' column, and the text after the
// time bars ("100% of 6.0s", "done at +6.20s").
const (
	labelWidth = 16
	afterWidth = 15
)

// barScale is the resolution of the time bars.
const barScale = 1000

func (d *barDisplay) start(time.Time) {
	fmt.Fprint(d.out, startText(d.srv, d.width))
	d.frame.Store(&frame{phase: "warm-up", lbUp: true})
	// mpb lays its lines out in the terminal's width (WithWidth's, when it
	// draws on something else): a line longer than that would be cut
	// with "…". The time bars are sized to fill d.width; the text lines
	// are laid out for it, and fit cuts them at a word boundary in a
	// narrower terminal.
	d.p = mpb.New(mpb.WithOutput(d.out), mpb.WithWidth(d.width), mpb.WithRefreshRate(sampleEvery),
		// mpb v8.16.2's ForceTTY does not enable auto refresh, whatever its
		// doc says: ask for both.
		mpb.ContainerOptional(mpb.ForceTTY(), d.forceTTY), mpb.ContainerOptional(mpb.WithAutoRefresh(), d.forceTTY))
	barWidth := mpb.BarWidth(max(10, d.width-labelWidth-afterWidth-2)) // mpb puts a space on each side of a bar
	label := func(s string) decor.Decorator { return decor.Name(s, decor.WC{W: labelWidth, C: decor.DindentRight}) }
	after := func(f func(*frame) string) decor.Decorator {
		return decor.Any(func(decor.Statistics) string { return f(d.frame.Load()) }, decor.WC{W: afterWidth})
	}
	d.warm = d.p.AddBar(barScale, barWidth,
		mpb.PrependDecorators(label("warm-up")),
		mpb.AppendDecorators(after(func(f *frame) string {
			return fmt.Sprintf("%.1fs of %.1fs", min(f.t+d.cfg.warmup, d.cfg.warmup).Seconds(), d.cfg.warmup.Seconds())
		})))
	d.window = d.p.AddBar(barScale, barWidth,
		mpb.PrependDecorators(label(windowName(d.srv))),
		mpb.AppendDecorators(after(func(f *frame) string { return phaseText(f, d.cfg, d.srv) })))

	rows := []func(*frame) string{
		func(f *frame) string { return row("connections", connParts(f)[0]) },
		func(f *frame) string { return row("", strings.Join(connParts(f)[1:], "; ")) },
		func(f *frame) string { return row("requests", requestText(f)) },
		func(f *frame) string { return row("load balancer", lbText(f)) },
	}
	if d.srv.stats != nil {
		rows = append(rows,
			func(f *frame) string {
				if f.stats == nil {
					return row("drainhttp.Stats", "")
				}
				return row("drainhttp.Stats", drainedText(f.stats))
			},
			func(f *frame) string {
				if f.stats == nil {
					return ""
				}
				return row("", forcedText(f.stats))
			})
	}
	for _, text := range rows {
		d.lines = append(d.lines, d.p.New(0, mpb.NopStyle(), mpb.BarFillerTrim(),
			mpb.PrependDecorators(decor.Any(func(st decor.Statistics) string {
				return fit(text(d.frame.Load()), min(d.width, st.AvailableWidth))
			}))))
	}
}

// row is a line of the bar display: label in its column, then text.
func row(label, text string) string { return fmt.Sprintf("%-*s%s", labelWidth, label, text) }

func (d *barDisplay) update(f *frame) {
	d.frame.Store(f)
	if f.t < 0 {
		d.warm.SetCurrent(int64(barScale * (1 + f.t.Seconds()/d.cfg.warmup.Seconds())))
		return
	}
	if !d.warm.Completed() {
		d.warm.SetCurrent(barScale)
	}
	if cur := int64(barScale * f.progress); cur < barScale {
		d.window.SetCurrent(cur)
	} else if !d.window.Completed() {
		d.window.SetCurrent(barScale)
	}
}

func (d *barDisplay) event(t time.Duration, msg string) {
	fmt.Fprint(d.p, eventText(t, msg, d.width))
}

func (d *barDisplay) finish() {
	for _, b := range []*mpb.Bar{d.warm, d.window} {
		if !b.Completed() {
			b.Abort(false) // Shutdown's bar stays where Shutdown returned
		}
	}
	for _, b := range d.lines {
		b.SetTotal(-1, true)
	}
	d.p.Wait()
}

// startText is the heading of a run.
func startText(srv *server, width int) string {
	return "\n" + wrapString(fmt.Sprintf("== %s: %s on the signal", srv.name, srv.action), width, "", "   ")
}

// eventText is an event, at t since the signal, wrapped with a hanging
// indent under its time.
func eventText(t time.Duration, msg string, width int) string {
	first := fmt.Sprintf("  %7s  ", fmtT(t))
	return wrapString(msg, width, first, strings.Repeat(" ", len(first)))
}

// fmtT formats a time since the signal: "+0.10s", "-1.00s".
func fmtT(t time.Duration) string { return fmt.Sprintf("%+.2fs", t.Seconds()) }

// windowName names the time bar after the signal.
func windowName(srv *server) string {
	if srv.progress == nil {
		return "Shutdown grace"
	}
	return "drain window"
}

// phaseText is what follows the time bar after the signal.
func phaseText(f *frame, cfg config, srv *server) string {
	switch f.phase {
	case "warm-up":
		return "waiting"
	case "done":
		return "done at " + fmtT(f.stopTook)
	}
	return fmt.Sprintf("%3.0f%% of %.1fs", 100*f.progress, srv.window.Seconds())
}

// connParts describes the connections: how many are open and whose, by
// state, and the totals. The first part says why a server has one
// connection more than there are clients.
func connParts(f *frame) []string {
	c := f.conns
	return []string{
		fmt.Sprintf("open %d = %d from clients + %d from the load balancer", c.open, c.clients(), c.probe),
		fmt.Sprintf("active %d, idle %d, new %d", c.active, c.idle, c.new),
		fmt.Sprintf("accepted %d, closed %d", c.accepted, c.closed),
	}
}

func requestText(f *frame) string {
	s := fmt.Sprintf("%.0f ok/s, %d ok, %d failed", f.rps, f.ok, f.failed)
	if k := kindsText(f.byKind); k != "" {
		s += ": " + k
	}
	return s
}

func lbText(f *frame) string {
	if f.lbUp {
		return "sending requests"
	}
	return "took the server out at " + fmtT(f.lbDown)
}

// drainReasons are the keys of drainhttp's Stats.Drained in the order the
// display shows them; the first three, a drain's own, are always shown,
// the others when not zero, and so are keys the demo does not know.
var drainReasons = []string{"decision", "proactive", "window_end",
	"health_check", "max_age", "max_requests", "goaway_chance", "shutdown", "close"}

// drainedText shows drainhttp's drained counts, by reason.
func drainedText(st *drainhttp.Stats) string {
	var total uint64
	for _, n := range st.Drained {
		total += n
	}
	var parts []string
	for i, r := range drainReasons {
		if n := st.Drained[r]; i < 3 || n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
	}
	for _, r := range slices.Sorted(maps.Keys(st.Drained)) {
		if n := st.Drained[r]; n > 0 && !slices.Contains(drainReasons, r) {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
	}
	return fmt.Sprintf("drained %d: %s", total, strings.Join(parts, ", "))
}

// forcedText shows drainhttp's other drain counters.
func forcedText(st *drainhttp.Stats) string {
	return fmt.Sprintf("forced %d, GOAWAYs %d", st.Forced, st.GoAways)
}
