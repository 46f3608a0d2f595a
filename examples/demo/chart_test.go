package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartResults are two made-up runs whose listeners closed at closed[0]
// and closed[1], with flat lines: 10 connections, 100 ok/s, 0 and 40
// failures.
func chartResults(closed [2]time.Duration) []*result {
	var rs []*result
	for i, srv := range []*server{{name: "drainhttp", action: "Server.Drain"}, {name: "net/http", action: "http.Server.Shutdown"}} {
		r := &result{server: srv, acceptedFor: closed[i], stopTook: 2 * time.Second}
		r.byKind[failRefused] = int64(40 * i)
		for j := -10; j <= 30; j++ {
			r.samples = append(r.samples, sample{t: time.Duration(j) * sampleEvery, conns: connCounts{open: 10},
				ok: int64(10 * (j + 10)), failed: int64(40 * i)})
		}
		rs = append(rs, r)
	}
	return rs
}

// near reports whether c is within a small distance of want.
func near(c color.Color, want color.RGBA) bool {
	r, g, b, _ := c.RGBA()
	d := func(x uint32, y uint8) int { v := int(x>>8) - int(y); return v * v }
	return d(r, want.R)+d(g, want.G)+d(b, want.B) < 40*40
}

func TestChartLegendsGiveEveryEntryASwatch(t *testing.T) {
	ch, err := newChart(config{clients: 6}, chartResults([2]time.Duration{time.Second, 0}))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct {
		name    string
		entries []legendEntry
		want    int
	}{{"servers", ch.servers, 2}, {"markers", ch.markers, 3}, {"failures", ch.failures, 2}} {
		if len(l.entries) != l.want {
			t.Errorf("%s legend: %d entries, want %d", l.name, len(l.entries), l.want)
		}
		for _, e := range l.entries {
			if e.thumb == nil {
				t.Errorf("%s legend: %q has no swatch", l.name, e.name)
				continue
			}
			// Draw the swatch alone, as the legend would, and look for ink.
			img := vgimg.NewWith(vgimg.UseWH(vg.Points(28), vg.Points(12)), vgimg.UseDPI(96))
			c := draw.New(img)
			e.thumb.Thumbnail(&c)
			var ink int
			b := img.Image().Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					if _, _, _, a := img.Image().At(x, y).RGBA(); a > 0 {
						ink++
					}
				}
			}
			if ink < 10 {
				t.Errorf("%s legend: the swatch of %q draws %d pixels", l.name, e.name, ink)
			}
		}
	}
}

// TestChartMarkersAtTheSameInstantAreAllVisible draws both listener
// markers on the signal, the worst case: in the marker's columns there must
// be many pixels of each server's colour, and the signal's grey beside
// them.
func TestChartMarkersAtTheSameInstantAreAllVisible(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(path, config{clients: 6}, chartResults([2]time.Duration{0, 0})); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	bounds := img.Bounds()
	count := func(x int, col color.RGBA) int {
		n := 0
		for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
			if near(img.At(x, y), col) {
				n++
			}
		}
		return n
	}
	// The marker's column: the one with the most of net/http's colour (its
	// data lines are horizontal, and cross a column in a few pixels).
	mx, most := 0, 0
	for x := bounds.Min.X; x < bounds.Max.X; x++ {
		if n := count(x, plainColor); n > most {
			mx, most = x, n
		}
	}
	sum := func(col color.RGBA, from, to int) int { // in columns mx+from to mx+to
		n := 0
		for x := mx + from; x <= mx+to; x++ {
			n += count(x, col)
		}
		return n
	}
	// Three panels of some 200 pixels each: a dotted line shows on half.
	const want = 150
	if n := sum(plainColor, -1, 1); n < want {
		t.Errorf("net/http's listener marker: %d pixels, want at least %d", n, want)
	}
	if n := sum(drainColor, -1, 1); n < want {
		t.Errorf("drainhttp's listener marker, on the same instant: %d pixels, want at least %d", n, want)
	}
	// The band's grey beside the dots, in rows where it is not grey 20
	// columns away (the grid's horizontal lines are light grey too).
	band := 0
	for _, dx := range []int{-5, -4, -3, 3, 4, 5} {
		for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
			if near(img.At(mx+dx, y), signalColor) && !near(img.At(mx+20, y), signalColor) && !near(img.At(mx-20, y), signalColor) {
				band++
			}
		}
	}
	if band < 3*want {
		t.Errorf("the signal's band, under both: %d pixels either side, want at least %d", band, 3*want)
	}
}

func TestWriteChartPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(path, config{clients: 1}, chartResults([2]time.Duration{time.Second, 0})); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, format, err := image.DecodeConfig(bytes.NewReader(b)); err != nil || format != "png" {
		t.Errorf("%s is not a PNG file: %v", path, err)
	}
}

func TestFileURLIsAbsoluteAndEscaped(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/tmp/drain-demo.svg", "file:///tmp/drain-demo.svg"},
		{"/tmp/my charts/drain demo.svg", "file:///tmp/my%20charts/drain%20demo.svg"},
	} {
		if got := fileURL(tc.path); got != tc.want {
			t.Errorf("fileURL(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fileURL("x.svg"), fileURL(filepath.Join(wd, "x.svg")); got != want {
		t.Errorf("fileURL(%q) = %q, want %q", "x.svg", got, want)
	}
}
