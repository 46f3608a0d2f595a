package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Colours from the Okabe-Ito palette, which colour-blind readers can tell
// apart.
var (
	drainColor  = color.RGBA{R: 0, G: 114, B: 178, A: 255} // blue
	plainColor  = color.RGBA{R: 213, G: 94, B: 0, A: 255}  // vermillion
	markerColor = color.RGBA{R: 120, G: 120, B: 120, A: 255}
)

// legendX is where the legends start, from the left of the data area.
const legendX = 4.6 * vg.Inch

// rateWindow smooths the requests-per-second curve.
const rateWindow = 500 * time.Millisecond

// writeChart draws three panels over the same time axis, seconds since the
// signal: open connections, successful requests per second and cumulative
// failed requests, each with one line per server, and writes them to path
// as SVG or PNG (by its extension).
func writeChart(path string, cfg config, rs []*result) error {
	// Liberation Sans is metric-compatible with Arial and Helvetica, which
	// SVG viewers without it substitute.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	conns := newPanel("open connections")
	conns.Title.Text = fmt.Sprintf("%d clients, same load balancer, same signal at t = 0: drainhttp Drain vs net/http Shutdown", cfg.clients)
	rate := newPanel("ok requests/s (0.5 s mean)")
	fails := newPanel("failed requests (cumulative)")
	fails.X.Label.Text = "seconds since the signal"

	var xmin, xmax float64
	for i, r := range rs {
		col, dashes := drainColor, []vg.Length(nil)
		if i > 0 {
			col, dashes = plainColor, []vg.Length{vg.Points(6), vg.Points(3)}
		}
		name := r.server.name + " (" + r.server.action + ")"
		var cx, rx, fx plotter.XYs
		back := int(rateWindow / sampleEvery)
		for j, s := range r.samples {
			t := s.t.Seconds()
			xmin, xmax = min(xmin, t), max(xmax, t)
			cx = append(cx, plotter.XY{X: t, Y: float64(s.conns.open)})
			fx = append(fx, plotter.XY{X: t, Y: float64(s.failed)})
			if j >= back {
				p := r.samples[j-back]
				rx = append(rx, plotter.XY{X: t, Y: float64(s.ok-p.ok) / (s.t - p.t).Seconds()})
			}
		}
		failName := fmt.Sprintf("%s: %d failed%s", r.server.name, r.failed(), kindsText(r.byKind))
		for _, l := range []struct {
			p    *plot.Plot
			xys  plotter.XYs
			name string
		}{{conns, cx, name}, {rate, rx, name}, {fails, fx, failName}} {
			if err := addLine(l.p, l.xys, l.name, col, dashes, vg.Points(1.5)); err != nil {
				return err
			}
		}
	}

	// Markers: the signal, and when each listener stopped accepting.
	for _, p := range []*plot.Plot{conns, rate, fails} {
		p.X.Min, p.X.Max = xmin, xmax
		p.Y.Min = 0
		p.Y.Max = max(1, p.Y.Max*1.5) // headroom for the legend
		if err := addMarker(p, 0, "", markerColor, nil); err != nil {
			return err
		}
		for i, r := range rs {
			col := drainColor
			if i > 0 {
				col = plainColor
			}
			if err := addMarker(p, r.acceptedFor.Seconds(), "", col, []vg.Length{vg.Points(1), vg.Points(2)}); err != nil {
				return err
			}
		}
	}
	// Name the markers once, in the top panel's legend.
	conns.Legend.Add("signal (grey); dotted: listener closed")

	const width, height = 10 * vg.Inch, 9 * vg.Inch
	var c vg.CanvasWriterTo
	if strings.EqualFold(filepath.Ext(path), ".png") {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96))}
	} else {
		c = vgsvg.New(width, height)
	}
	plots := [][]*plot.Plot{{conns}, {rate}, {fails}}
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadX: vg.Millimeter, PadY: 6 * vg.Millimeter,
		PadTop: 4 * vg.Millimeter, PadBottom: 3 * vg.Millimeter, PadLeft: 3 * vg.Millimeter, PadRight: 5 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, draw.New(c))
	for j := range plots {
		plots[j][0].Draw(canvases[j][0])
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newPanel(ylabel string) *plot.Plot {
	p := plot.New()
	p.Y.Label.Text = ylabel
	// Left-aligned legend text in the right half: a viewer whose font is
	// wider than the one measured here lets it run into empty space.
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = legendX
	p.X.Tick.Marker = niceTicks{}
	p.Y.Tick.Marker = niceTicks{}
	p.Add(plotter.NewGrid())
	return p
}

// addLine adds a line and grows the panel's Y range to hold it.
func addLine(p *plot.Plot, xys plotter.XYs, name string, col color.Color, dashes []vg.Length, width vg.Length) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = col, dashes, width
	p.Add(l)
	for _, xy := range xys {
		p.Y.Max = max(p.Y.Max, xy.Y)
	}
	if name != "" {
		p.Legend.Add(name, l)
	}
	return nil
}

// addMarker draws a vertical line at x across the panel's Y range, which
// must be final.
func addMarker(p *plot.Plot, x float64, name string, col color.Color, dashes []vg.Length) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
	if err != nil {
		return err
	}
	l.Color, l.Dashes, l.Width = col, dashes, vg.Points(1)
	p.Add(l)
	if name != "" {
		p.Legend.Add(name, l)
	}
	return nil
}

// niceTicks puts major ticks at 1, 2 or 5 times a power of ten, at most
// eight of them, labelled without trailing zeros.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return nil
	}
	step := math.Pow(10, math.Floor(math.Log10((hi-lo)/8)))
	for _, m := range []float64{1, 2, 5, 10} {
		if (hi-lo)/(m*step) <= 8 {
			step *= m
			break
		}
	}
	decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	var ticks []plot.Tick
	for k := math.Ceil(lo / step); k*step <= hi; k++ {
		v := k * step
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
	}
	return ticks
}
