package admin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// The Chromium tests render the status page in headless Chromium, the way a
// person would look at it, and read back the DOM it built and a screenshot.
// Chromium runs with --virtual-time-budget: the page's timers run as fast
// as the page's work allows, so five seconds of polling take well under one.
//
// Set DRAINHTTP_ADMIN_SCREENSHOTS to a directory to keep the screenshots
// there (admin-draining.png, admin-exited.png, admin-unreachable.png).

// TestStatusPage_RendersLiveDrainInChromium loads the status page in
// headless Chromium while the server drains, and checks that the page shows
// the server's numbers at that moment, fetched by the page itself: the page
// is served before the drain starts (its embedded first snapshot says
// "serving"), and only its polling can show the drain.
//
// The drain is Immediate, so that every connection is told to close at its
// start rather than at random times, and DrainTimeout is an hour, so that
// none of those told is closed while the browser looks: the idle ones
// close at once (and are counted drained), the busy and hijacked ones stay,
// and the numbers stand still.
func TestStatusPage_RendersLiveDrainInChromium(t *testing.T) {
	chromium := findChromium(t)

	const drainTime = time.Minute  // far longer than the browser looks
	release := make(chan struct{}) // ends the blocked requests
	entered := make(chan struct{}, 3)
	mux := http.NewServeMux()
	mux.Handle("/ok", okHandler())
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		entered <- struct{}{}
		<-release
		c.Close()
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s := &drainhttp.Server{
		Handler:      mux,
		Protocols:    &protos,
		DrainTime:    drainTime,
		Strategy:     drainhttp.Immediate,
		DrainTimeout: time.Hour,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	addr := l.Addr().String()

	// Six connections: two idle and two active HTTP/1.1 ones, a hijacked
	// one and an idle h2c one.
	var conns []net.Conn
	send := func(path string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: drainhttp\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
		return c
	}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(func() {
		close(release)
		// A drain whose context has ended closes every connection now.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Drain(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Drain: %v", err)
		}
		select {
		case err := <-served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v, want http.ErrServerClosed", err)
			}
		case <-time.After(testTimeout):
			t.Error("Serve did not return after the drain")
		}
		for _, c := range conns {
			c.Close()
		}
		h2c.CloseIdleConnections()
	})
	for range 2 {
		c := send("/ok")
		c.SetDeadline(time.Now().Add(testTimeout))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	send("/block")
	send("/block")
	send("/hijack")
	for range 3 {
		select {
		case <-entered:
		case <-time.After(testTimeout):
			t.Fatal("requests did not reach their handlers")
		}
	}
	resp, err := (&http.Client{Transport: h2c, Timeout: testTimeout}).Get("http://" + addr + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("h2c request went over %s", resp.Proto)
	}
	want := map[string]map[string]int64{
		"http/1.1": {"new": 0, "active": 2, "idle": 2, "hijacked": 1},
		"h2":       {"new": 0, "active": 0, "idle": 0, "hijacked": 0},
		"h2c":      {"new": 0, "active": 0, "idle": 1, "hijacked": 0},
	}
	if !waitFor(func() bool {
		st := s.Stats()
		return st.Accepted == 6 && fmt.Sprint(st.Open) == fmt.Sprint(want)
	}) {
		t.Fatalf("connections %+v, want 6 accepted, open %v", s.Stats(), want)
	}

	// The admin handler under a prefix, as an application would mount it.
	// The page is rendered first, then the drain starts and settles, and
	// only then is the page sent: its script cannot poll before.
	admin := http.StripPrefix("/debug/drain", New(s, Options{}))
	var once sync.Once
	adm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/drain/" {
			admin.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, r)
		once.Do(func() {
			if err := s.StartDrain(); err != nil {
				t.Errorf("StartDrain: %v", err)
			}
			// The idle connections close (the HTTP/1.1 ones once idle
			// for a second), the h2c one after its GOAWAY.
			if !waitFor(func() bool {
				st := s.Stats()
				return st.OpenTotal == 3 && st.Drained["proactive"] == 3 && st.GoAways == 1
			}) {
				t.Errorf("the drain did not settle: %+v", s.Stats())
			}
		})
		copyResponse(w, rec)
	}))
	t.Cleanup(adm.Close)

	shot := filepath.Join(t.TempDir(), "admin-draining.png")
	dom := runChromium(t, chromium, adm.URL+"/debug/drain/",
		"--virtual-time-budget=5000", "--dump-dom", "--screenshot="+shot, "--window-size=1200,1000")
	keepScreenshot(t, shot)

	ids, text := parseDOM(t, dom)
	if st := decodeStatus(t, text("initial-status")); st.State != "serving" {
		t.Fatalf("the page was served in state %q, want serving (before the drain)", st.State)
	}
	if n, err := strconv.Atoi(text("samples")); err != nil || n < 3 {
		t.Errorf("#samples %q: the page did not poll status (want at least 3 samples)", text("samples"))
	}
	for id, want := range map[string]string{
		"state":           "draining",
		"phase":           "window",
		"ready":           "not ready",
		"healthcheck":     "health check ok",
		"strategy":        "immediate",
		"live":            "live",
		"open-total":      "3",
		"open-active":     "2",
		"open-idle":       "0",
		"open-new":        "0",
		"open-hijacked":   "1",
		"accepted":        "6",
		"drained":         "3",
		"drained-reasons": "(proactive 3)",
		"forced":          "0",
		"goaways":         "1",
		"listeners":       "1",
		"drain-time":      "1m0s",
		"drain-timeout":   "1h0m0s",
		"adaptive":        "off",
	} {
		if got := text(id); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	if _, hidden := pageAttrOK(ids["banner"], "hidden"); !hidden {
		t.Errorf("the server-gone banner is shown while the server answers: %q", text("banner"))
	}
	// The window has just started: a small share of it has passed.
	label := regexp.MustCompile(`^(\d+\.\d)% of the 1m0s window$`).FindStringSubmatch(text("progress-label"))
	if label == nil {
		t.Errorf("#progress-label %q, want the share of the 1m0s window", text("progress-label"))
	} else if p, _ := strconv.ParseFloat(label[1], 64); p > 50 {
		t.Errorf("#progress-label %q: more of the window has passed than the test took", text("progress-label"))
	}
	if !regexp.MustCompile(`^\d+\.\d s left$`).MatchString(text("time-left")) {
		t.Errorf("#time-left %q, want seconds left", text("time-left"))
	}
	if p, err := strconv.ParseFloat(pageAttr(ids["progress"], "data-progress"), 64); err != nil || p <= 0 || p > 0.5 {
		t.Errorf("#progress data-progress %q, want the share of the window passed", pageAttr(ids["progress"], "data-progress"))
	}

	rows := map[string]string{}
	walkPage(ids["protocols"], func(n *html.Node) {
		if n.DataAtom == atom.Tr {
			rows[pageAttr(n, "data-protocol")] = strings.Join(pageCells(n), " ")
		}
	})
	for proto, want := range map[string]string{"http/1.1": "http/1.1 0 2 0 1 3", "h2": "h2 0 0 0 0 0", "h2c": "h2c 0 0 0 0 0"} {
		if rows[proto] != want {
			t.Errorf("protocol row %q = %q, want %q", proto, rows[proto], want)
		}
	}

	// The timeline: the phases so far with their causes, the rest to come.
	if got, want := timelineSteps(ids["timeline"]), []string{
		"serving:done:", "not_ready:done:drain", "window:current:no_delay",
		"closing_listeners:next:", "closing_connections:next:", "drained:next:",
	}; !slices.Equal(got, want) {
		t.Errorf("timeline steps %q, want %q", got, want)
	}

	// The chart: one area per state, the drain window, and a time axis
	// that ends now, where the newest sample is drawn.
	areas, bands, lastX, nowLabel := 0, 0, 0.0, false
	walkPage(ids["chart"], func(n *html.Node) {
		switch class := pageAttr(n, "class"); {
		case n.Data == "path" && strings.HasPrefix(class, "a-"):
			areas++
		case n.Data == "rect" && class == "band":
			bands++
		case n.Data == "polyline" && class == "total":
			pts := strings.Fields(pageAttr(n, "points"))
			x, _, _ := strings.Cut(pts[len(pts)-1], ",")
			lastX, _ = strconv.ParseFloat(x, 64)
		case n.Data == "text" && class == "tick now":
			nowLabel = pageText(n) == "now" && pageAttr(n, "x") == "752"
		}
	})
	if areas < 4 || bands != 1 {
		t.Errorf("chart has %d areas and %d drain window bands, want one area per state and one band", areas, bands)
	}
	// 752 is the right edge; a second is 12 px of the one-minute axis, and
	// the newest sample is at most a poll old.
	if lastX < 752-2*12 || lastX > 752 {
		t.Errorf("the newest sample is drawn at x=%v, want at the right edge (now, 752)", lastX)
	}
	if !nowLabel {
		t.Error(`the time axis does not end with "now" at its right edge`)
	}

	// The DOM agrees with the server.
	if st := s.Stats(); st.OpenTotal != 3 || st.Accepted != 6 {
		t.Errorf("server stats %+v, want the 3 open connections the page shows", st)
	}
	checkColors(t, shot, map[string][3]int{
		"draining badge and bar (#e06a1b)": {0xe0, 0x6a, 0x1b},
		"active area (#2f9e62)":            {0x2f, 0x9e, 0x62},
		"hijacked area (#9b6fe0)":          {0x9b, 0x6f, 0xe0},
	})
}

// TestStatusPage_SaysTheServerHasExitedInChromium loads the page of a
// server that has drained, then takes the admin endpoint away, as a process
// that exits does: the page must say that the server has exited, not go
// quiet.
func TestStatusPage_SaysTheServerHasExitedInChromium(t *testing.T) {
	chromium := findChromium(t)
	s := &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	for range 2 { // two connections, left idle for the drain to close
		c := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
		resp, err := c.Get("http://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		defer c.CloseIdleConnections()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v, want http.ErrServerClosed", err)
	}

	url := serveOnce(t, New(s, Options{}))
	shot := filepath.Join(t.TempDir(), "admin-exited.png")
	dom := runChromium(t, chromium, url, "--virtual-time-budget=5000", "--dump-dom", "--screenshot="+shot, "--window-size=1200,1000")
	keepScreenshot(t, shot)

	ids, text := parseDOM(t, dom)
	if st := decodeStatus(t, text("initial-status")); st.State != "drained" || !st.Done {
		t.Fatalf("the page was served in state %q, done %v; want drained, done", st.State, st.Done)
	}
	if _, hidden := pageAttrOK(ids["banner"], "hidden"); hidden {
		t.Fatal("the page does not say that the server has gone")
	}
	if got := text("banner-title"); got != "The server has exited" {
		t.Errorf("#banner-title %q, want it to say the server has exited", got)
	}
	for _, want := range []string{"Its drain finished at ", "(no connection left)", "has not answered since ", "last report"} {
		if !strings.Contains(text("banner-text"), want) {
			t.Errorf("#banner-text %q lacks %q", text("banner-text"), want)
		}
	}
	if got := text("state"); got != "exited" {
		t.Errorf("#state %q, want exited", got)
	}
	if live := text("live"); !strings.HasPrefix(live, "no answer since ") || pageAttr(ids["live"], "class") != "err" {
		t.Errorf("#live %q (class %q), want a failing no answer", live, pageAttr(ids["live"], "class"))
	}
	if title := text("title"); title != "exited · drainhttp" {
		t.Errorf("title %q, want exited · drainhttp", title)
	}
	for id, want := range map[string]string{"open-total": "0", "accepted": "2", "drained": "2", "listeners": "0", "phase": "drained"} {
		if got := text(id); got != want {
			t.Errorf("#%s = %q, want %q (the last report)", id, got, want)
		}
	}
	if got, want := timelineSteps(ids["timeline"]), []string{
		"serving:done:", "not_ready:done:drain", "window:done:no_delay", "closing_listeners:done:window_end",
		"closing_connections:done:listeners_closed", "drained:done final:no_connection_left",
	}; !slices.Equal(got, want) {
		t.Errorf("timeline steps %q, want %q", got, want)
	}
	checkColors(t, shot, map[string][3]int{
		"exited badge and banner border (#8b1e3f)": {0x8b, 0x1e, 0x3f},
		"banner background (#fdecef)":              {0xfd, 0xec, 0xef},
	})
}

// TestStatusPage_SaysTheServerIsNotAnsweringInChromium takes the admin
// endpoint away while the server still serves: the page cannot know
// whether the process exited or the network failed, and says both.
func TestStatusPage_SaysTheServerIsNotAnsweringInChromium(t *testing.T) {
	chromium := findChromium(t)
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler()}, Options{})
	url := serveOnce(t, New(at.s, Options{}))
	shot := filepath.Join(t.TempDir(), "admin-unreachable.png")
	dom := runChromium(t, chromium, url, "--virtual-time-budget=3000", "--dump-dom", "--screenshot="+shot, "--window-size=1200,1000")
	keepScreenshot(t, shot)

	ids, text := parseDOM(t, dom)
	if _, hidden := pageAttrOK(ids["banner"], "hidden"); hidden {
		t.Fatal("the page does not say that the server stopped answering")
	}
	if got := text("banner-title"); got != "The server is not answering: it has exited, or is unreachable" {
		t.Errorf("#banner-title %q", got)
	}
	if bt := text("banner-text"); !strings.Contains(bt, "polls failed") || !strings.Contains(bt, "said serving (phase serving)") {
		t.Errorf("#banner-text %q, want the failed polls and the last report", bt)
	}
	if got := text("state"); got != "unreachable" {
		t.Errorf("#state %q, want unreachable", got)
	}
}

// serveOnce serves h on a listener of its own until it has served the
// status page once; then the listener closes and every later request on a
// connection already open is cut, as if the process had exited. It returns
// the page's URL.
func serveOnce(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var gone atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		if r.URL.Path != "/" {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		gone.Store(true)
		l.Close() // before the page is sent: its script cannot poll before
		w.Header().Set("Connection", "close")
		copyResponse(w, rec)
	}), ReadHeaderTimeout: testTimeout}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return "http://" + l.Addr().String() + "/"
}

// copyResponse writes a recorded response to w.
func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// parseDOM parses Chromium's dump and returns its elements by id and a
// function returning an element's trimmed text (or <title>'s for "title").
func parseDOM(t *testing.T, dom []byte) (map[string]*html.Node, func(id string) string) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	ids := pageElements(doc)
	walkPage(doc, func(n *html.Node) {
		if n.DataAtom == atom.Title {
			ids["title"] = n
		}
	})
	return ids, func(id string) string {
		t.Helper()
		if ids[id] == nil {
			t.Fatalf("rendered page has no #%s:\n%s", id, dom)
		}
		return strings.TrimSpace(pageText(ids[id]))
	}
}

// timelineSteps describes the steps of the rendered timeline as
// "phase:state:cause".
func timelineSteps(list *html.Node) []string {
	var out []string
	for _, li := range pageChildren(list) {
		state := strings.TrimPrefix(pageAttr(li, "class"), "step ")
		out = append(out, pageAttr(li, "data-phase")+":"+state+":"+pageAttr(li, "data-cause"))
	}
	return out
}

// waitFor polls cond, which watches real sockets, until it holds, for at
// most testTimeout, and reports whether it did.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// keepScreenshot copies the screenshot at path to the directory named by
// DRAINHTTP_ADMIN_SCREENSHOTS, if set, for a person to look at.
func keepScreenshot(t *testing.T, path string) {
	t.Helper()
	dir := os.Getenv("DRAINHTTP_ADMIN_SCREENSHOTS")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	out := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot saved to %s", out)
}

// checkColors checks that the PNG at path is 1200×1000 and shows each of
// colors over a visible area.
func checkColors(t *testing.T, path string, colors map[string][3]int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 1000 {
		t.Errorf("screenshot is %v, want 1200×1000", b)
	}
	for name, c := range colors {
		if n := countColor(img, c); n < 500 {
			t.Errorf("screenshot has %d pixels of the %s, want a visible area", n, name)
		}
	}
}

// countColor counts the pixels of img within 3 of c in every channel.
func countColor(img image.Image, c [3]int) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(int(r>>8), c[0]) && near(int(g>>8), c[1]) && near(int(bl>>8), c[2]) {
				n++
			}
		}
	}
	return n
}

func near(a, b int) bool { return a-b <= 3 && b-a <= 3 }

// findChromium returns the path of a Chromium or Chrome binary. Without one
// the test is skipped, except in CI (CI=true), which installs Chromium
// (.ci/run) and so fails instead.
func findChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "headless Chromium not found (Debian: apt-get update && apt-get install -y chromium)"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg + "; CI is set, so this is a failure: .ci/run must install it")
	}
	t.Skip(msg + "; skipping the browser test (with CI=true it fails instead)")
	return ""
}

// chromiumTimeout bounds one headless Chromium run: a cold start on a busy
// 2-core machine under -race takes a few seconds, virtual time none.
const chromiumTimeout = time.Minute

// runChromium loads url in a fresh headless Chromium with a throwaway
// profile and returns its standard output (the DOM with --dump-dom). The
// process is killed if it outlives chromiumTimeout.
func runChromium(t *testing.T, chromium, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	args = append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-quic", "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir=" + t.TempDir(),
	}, args...)
	cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
	cmd.WaitDelay = 5 * time.Second // for the output pipes after a kill
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("chromium did not finish within %v; stderr:\n%s", chromiumTimeout, tail(stderr.Bytes(), 4000))
	}
	if err != nil {
		t.Fatalf("chromium: %v; stderr:\n%s", err, tail(stderr.Bytes(), 4000))
	}
	if stdout.Len() == 0 && slices.Contains(args, "--dump-dom") {
		t.Fatalf("chromium printed no DOM; stderr:\n%s", tail(stderr.Bytes(), 4000))
	}
	return stdout.Bytes()
}

func tail(b []byte, n int) []byte { return b[max(len(b)-n, 0):] }
