package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// newDisplay returns progress bars if stdout is a terminal, and one plain
// line per second otherwise (CI, pipes, tests).
func newDisplay(stdout io.Writer, cfg config, srv *server) display {
	if f, ok := stdout.(*os.File); ok && cupwriter.New(f, false).IsTerminal() {
		return &barDisplay{out: stdout, cfg: cfg, srv: srv}
	}
	return &lineDisplay{out: stdout, srv: srv}
}

// lineDisplay prints a line per second, and each event as it happens.
// The sampler and the scenario both print: mu orders their lines.
type lineDisplay struct {
	mu   sync.Mutex
	out  io.Writer
	srv  *server
	last time.Duration
	seen bool
}

func (d *lineDisplay) start(time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "\n== %s: %s on the signal\n", d.srv.name, d.srv.action)
}

func (d *lineDisplay) update(f *frame) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen && f.t-d.last < time.Second {
		return
	}
	d.seen, d.last = true, f.t
	line := fmt.Sprintf("[%s] t=%+6.2fs %-*s | %s | %s | lb %s",
		d.srv.name, f.t.Seconds(), len(d.srv.action)+2, phaseText(f), connText(f), requestText(f), lbText(f.lbUp))
	if f.stats != nil {
		line += " | " + statsText(f.stats)
	}
	fmt.Fprintln(d.out, line)
}

func (d *lineDisplay) event(msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "[%s] %s\n", d.srv.name, msg)
}

func (d *lineDisplay) finish() {}

// barDisplay draws github.com/vbauerster/mpb bars: the warm-up, the drain
// window (or Shutdown's grace period), and lines for connections, requests
// and the load balancer.
type barDisplay struct {
	out      io.Writer
	cfg      config
	srv      *server
	forceTTY bool // for tests: draw on a writer that is not a terminal

	p      *mpb.Progress
	warm   *mpb.Bar
	window *mpb.Bar
	lines  []*mpb.Bar
	frame  atomic.Pointer[frame]
}

// barScale is the resolution of the time bars, barWidth their width in
// columns.
const (
	barScale = 1000
	barWidth = 50
)

func (d *barDisplay) start(time.Time) {
	fmt.Fprintf(d.out, "\n== %s: %s on the signal\n", d.srv.name, d.srv.action)
	d.frame.Store(&frame{phase: "warm-up", lbUp: true})
	d.p = mpb.New(mpb.WithOutput(d.out), mpb.WithWidth(barWidth), mpb.WithRefreshRate(sampleEvery),
		// mpb v8.16.2's ForceTTY does not enable auto refresh, whatever its
		// doc says: ask for both.
		mpb.ContainerOptional(mpb.ForceTTY(), d.forceTTY), mpb.ContainerOptional(mpb.WithAutoRefresh(), d.forceTTY))
	label := func(s string) decor.Decorator { return decor.Name(s, decor.WC{W: 16, C: decor.DindentRight}) }
	d.warm = d.p.AddBar(barScale,
		mpb.PrependDecorators(label("warm-up")),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			f := d.frame.Load()
			return fmt.Sprintf("%5.1fs / %.1fs", min(f.t+d.cfg.warmup, d.cfg.warmup).Seconds(), d.cfg.warmup.Seconds())
		})))
	windowName := "drain window"
	if d.srv.progress == nil {
		windowName = "Shutdown grace"
	}
	d.window = d.p.AddBar(barScale,
		mpb.PrependDecorators(label(windowName)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			f := d.frame.Load()
			return phaseText(f)
		})))
	rows := []func(*frame) string{
		func(f *frame) string { return "connections     " + connText(f) },
		func(f *frame) string { return "requests        " + requestText(f) },
		func(f *frame) string { return "load balancer   " + lbText(f.lbUp) },
	}
	if d.srv.stats != nil {
		rows = append(rows, func(f *frame) string {
			if f.stats == nil {
				return ""
			}
			return "drainhttp.Stats " + statsText(f.stats)
		})
	}
	for _, text := range rows {
		d.lines = append(d.lines, d.p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			return text(d.frame.Load())
		}))))
	}
}

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

func (d *barDisplay) event(msg string) {
	fmt.Fprintf(d.p, "  %s\n", msg)
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

func phaseText(f *frame) string {
	switch f.phase {
	case "warm-up":
		return "warm-up"
	case "done":
		return "returned after " + fmtDur(f.stopTook)
	}
	return fmt.Sprintf("%s %3.0f%%", f.phase, 100*f.progress)
}

func connText(f *frame) string {
	c := f.conns
	return fmt.Sprintf("open %3d (active %3d, idle %3d, new %2d), accepted %4d, closed %4d",
		c.open, c.active, c.idle, c.new, c.accepted, c.closed)
}

func requestText(f *frame) string {
	return fmt.Sprintf("%4.0f ok/s, ok %6d, failed %4d%s", f.rps, f.ok, f.failed, kindsText(f.byKind))
}

func lbText(up bool) string {
	if up {
		return "sending"
	}
	return "server taken out"
}

// statsText shows drainhttp's own counters.
func statsText(st *drainhttp.Stats) string {
	return fmt.Sprintf("drained by decision %d, proactively %d, forced %d; GOAWAYs %d",
		st.Drained["decision"], st.Drained["proactive"], st.Forced, st.GoAways)
}
