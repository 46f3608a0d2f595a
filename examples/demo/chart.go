package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
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
// apart, and the signal's band: a light grey.
var (
	drainColor  = color.RGBA{R: 0, G: 114, B: 178, A: 255} // blue
	plainColor  = color.RGBA{R: 213, G: 94, B: 0, A: 255}  // vermillion
	signalColor = color.RGBA{R: 200, G: 200, B: 200, A: 255}
)

// Marker styles. The signal is a wide band, drawn first, under everything;
// each listener close is a dotted line of its server's colour, drawn last,
// over the data. The two dotted lines have the same dash pattern, shifted
// by one dash, so that where they fall on the same instant (net/http
// closes its listener at the signal; with a short drain time drainhttp's
// may close near net/http's) their dots alternate and both stay visible,
// and so does the band under them.
var (
	signalWidth = vg.Points(7)
	dotLen      = vg.Points(2.5)
	dotWidth    = vg.Points(1.5)
)

// rateWindow smooths the requests-per-second curve.
const rateWindow = 500 * time.Millisecond

// Chart layout: the canvas, and the header above the panels, which holds
// the title and the legend of the lines and markers that every panel
// shares.
const (
	chartWidth, chartHeight = 10 * vg.Inch, 9.5 * vg.Inch
	headerHeight            = 0.95 * vg.Inch
)

// writeChart draws three panels over the same time axis, seconds since the
// signal: open connections, successful requests per second and cumulative
// failed requests, each with one line per server, and writes them to path
// as SVG or PNG (by its extension). Every line and marker is named, with
// its swatch, in the header's legend; the failures panel names each
// server's failures in its own.
func writeChart(path string, cfg config, rs []*result) error {
	ch, err := newChart(cfg, rs)
	if err != nil {
		return err
	}
	var c vg.CanvasWriterTo
	if strings.EqualFold(filepath.Ext(path), ".png") {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(chartWidth, chartHeight), vgimg.UseDPI(96))}
	} else {
		c = vgsvg.New(chartWidth, chartHeight)
	}
	ch.draw(c)
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

// legendEntry is one entry of a legend: its text and its swatch.
type legendEntry struct {
	name  string
	thumb plot.Thumbnailer
}

// chart is the chart, ready to draw.
type chart struct {
	title              string
	conns, rate, fails *plot.Plot
	// servers and markers are the header's two legends, failures the
	// failures panel's.
	servers, markers, failures []legendEntry
	marks                      []float64 // the markers' times: the signal's first
}

func newChart(cfg config, rs []*result) (*chart, error) {
	// Liberation Sans is metric-compatible with Arial and Helvetica, which
	// SVG viewers without it substitute.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	ch := &chart{
		title: fmt.Sprintf("%d clients, the same load balancer, the same signal at t = 0: "+
			"drainhttp's Drain and net/http's Shutdown", cfg.clients),
		conns: newPanel("open connections"),
		rate:  newPanel("ok requests/s (0.5 s mean)"),
		fails: newPanel("failed requests (cumulative)"),
		marks: []float64{0},
	}
	ch.fails.X.Label.Text = "seconds since the signal"
	panels := []*plot.Plot{ch.conns, ch.rate, ch.fails}
	signal := draw.LineStyle{Color: signalColor, Width: signalWidth}
	for _, p := range panels {
		p.Add(vline{X: 0, sty: signal})
	}

	var xmin, xmax float64
	for i, r := range rs {
		sty := serverStyle(i)
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
		var thumb plot.Thumbnailer
		for _, l := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{ch.conns, cx}, {ch.rate, rx}, {ch.fails, fx}} {
			line, err := addLine(l.p, l.xys, sty)
			if err != nil {
				return nil, err
			}
			if line != nil {
				thumb = line
			}
		}
		if thumb != nil {
			ch.servers = append(ch.servers, legendEntry{r.server.name + " (" + r.server.action + ")", thumb})
			failName := fmt.Sprintf("%s: %d failed", r.server.name, r.failed())
			if k := kindsText(r.byKind); k != "" {
				failName += " (" + k + ")"
			}
			ch.failures = append(ch.failures, legendEntry{failName, thumb})
		}
	}

	// Markers: when each listener stopped accepting, over everything (the
	// signal's band went under everything, first).
	ch.markers = append(ch.markers, legendEntry{"signal (t = 0)", lineThumb(signal)})
	for i, r := range rs {
		sty := listenerStyle(i)
		ch.markers = append(ch.markers,
			legendEntry{fmt.Sprintf("%s: listener closed (%s)", r.server.name, fmtT(r.acceptedFor)), lineThumb(sty)})
		ch.marks = append(ch.marks, r.acceptedFor.Seconds())
		for _, p := range panels {
			p.Add(vline{X: r.acceptedFor.Seconds(), sty: sty})
		}
	}
	for _, p := range panels {
		p.X.Min, p.X.Max = xmin, xmax
		p.Y.Min = 0
		p.Y.Max = max(1, p.Y.Max*1.1)
	}
	ch.fails.Y.Max = max(1, ch.fails.Y.Max*1.4) // room for its legend
	for _, e := range ch.failures {
		ch.fails.Legend.Add(e.name, e.thumb)
	}
	return ch, nil
}

// draw draws the chart on c, of chartWidth by chartHeight.
func (ch *chart) draw(c vg.CanvasSizer) {
	dc := draw.New(c)
	drawHeader(draw.Crop(dc, 0, 0, chartHeight-headerHeight, 0), ch.title, ch.servers, ch.markers)
	plots := [][]*plot.Plot{{ch.conns}, {ch.rate}, {ch.fails}}
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadX: vg.Millimeter, PadY: 6 * vg.Millimeter,
		PadTop: 1 * vg.Millimeter, PadBottom: 3 * vg.Millimeter, PadLeft: 3 * vg.Millimeter, PadRight: 5 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, draw.Crop(dc, 0, 0, 0, -headerHeight))
	placeLegend(ch.fails, canvases[2][0], ch.marks)
	for j := range plots {
		plots[j][0].Draw(canvases[j][0])
	}
}

// serverStyle is the style of server i's data lines: drainhttp's solid,
// net/http's dashed.
func serverStyle(i int) draw.LineStyle {
	if i == 0 {
		return draw.LineStyle{Color: drainColor, Width: vg.Points(1.5)}
	}
	return draw.LineStyle{Color: plainColor, Width: vg.Points(1.5), Dashes: []vg.Length{vg.Points(6), vg.Points(3)}}
}

// listenerStyle is the style of server i's listener-closed marker.
func listenerStyle(i int) draw.LineStyle {
	col := drainColor
	if i > 0 {
		col = plainColor
	}
	return draw.LineStyle{Color: col, Width: dotWidth, Dashes: []vg.Length{dotLen, dotLen},
		DashOffs: vg.Length(i%2) * dotLen}
}

// drawHeader draws the title across the top of c, and under it the two
// legends side by side.
func drawHeader(c draw.Canvas, title string, left, right []legendEntry) {
	ts := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 13), Handler: plot.DefaultTextHandler, XAlign: draw.XCenter}
	c.FillText(ts, vg.Point{X: (c.Min.X + c.Max.X) / 2, Y: c.Max.Y - ts.Height(title) - vg.Millimeter}, title)
	body := draw.Crop(c, 0, 0, vg.Millimeter, -ts.Height(title)-3*vg.Millimeter)
	for i, entries := range [][]legendEntry{left, right} {
		l := plot.NewLegend()
		l.Top, l.Left = true, true
		l.ThumbnailWidth = vg.Points(28)
		l.Padding = vg.Points(1)
		l.XOffs = 0.9*vg.Inch + vg.Length(i)*4.3*vg.Inch
		for _, e := range entries {
			l.Add(e.name, e.thumb)
		}
		l.Draw(body)
	}
}

func newPanel(ylabel string) *plot.Plot {
	p := plot.New()
	p.Y.Label.Text = ylabel
	// The failures panel's legend (the others have none) is at the top,
	// its left edge placed by placeLegend.
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.ThumbnailWidth = vg.Points(28)
	p.X.Tick.Marker = niceTicks{}
	p.Y.Tick.Marker = niceTicks{}
	p.Add(plotter.NewGrid())
	return p
}

// addLine adds a line in style sty, and grows the panel's Y range to hold
// it. It returns the line, or nil if xys is empty.
func addLine(p *plot.Plot, xys plotter.XYs, sty draw.LineStyle) (*plotter.Line, error) {
	if len(xys) == 0 {
		return nil, nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.LineStyle = sty
	p.Add(l)
	for _, xy := range xys {
		p.Y.Max = max(p.Y.Max, xy.Y)
	}
	return l, nil
}

// placeLegend sets the offset of p's legend so that it crosses none of the
// markers at marks: its left edge just after the first marker from which
// it has room, or after the signal (marks[0]) if it has room nowhere. Its
// entries are at the top of the panel, above the data lines (the caller
// gives the panel the headroom).
func placeLegend(p *plot.Plot, c draw.Canvas, marks []float64) {
	da := p.DataCanvas(c)
	trX, _ := p.Transforms(&da)
	width := p.Legend.Rectangle(da).Size().X
	gap := signalWidth // from a marker to the legend's swatches
	clear := func(x0 vg.Length) bool {
		if x0+width > da.Max.X {
			return false
		}
		for _, m := range marks {
			if x := trX(m); x >= x0-gap/2 && x <= x0+width+gap/2 {
				return false
			}
		}
		return true
	}
	best := trX(marks[0]) + gap
	for _, m := range slices.Sorted(slices.Values(marks)) {
		if x0 := trX(m) + gap; clear(x0) {
			best = x0
			break
		}
	}
	p.Legend.XOffs = best - da.Min.X
}

// vline is a marker: a vertical line at X across the whole height of a
// panel, whatever its Y range. It is drawn in the order it was added to
// the panel, among the data.
type vline struct {
	X   float64
	sty draw.LineStyle
}

func (v vline) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	x := trX(v.X)
	c.StrokeLine2(v.sty, x, c.Min.Y, x, c.Max.Y)
}

// lineThumb is a legend swatch: a horizontal line in sty.
type lineThumb draw.LineStyle

func (t lineThumb) Thumbnail(c *draw.Canvas) {
	y := (c.Min.Y + c.Max.Y) / 2
	c.StrokeLine2(draw.LineStyle(t), c.Min.X, y, c.Max.X, y)
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
