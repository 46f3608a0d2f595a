package drainhttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// pageIDs are the elements the status page fills in, which tests and
// people's scripts may rely on.
var pageIDs = []string{
	"state", "ready", "healthcheck", "strategy", "live",
	"progress", "progress-label", "time-left",
	"open-total", "accepted", "drained", "drained-reasons", "forced", "goaways", "listeners",
	"chart", "open-active", "open-idle", "open-new", "open-hijacked",
	"protocols", "protocols-total", "drain-time", "drain-timeout", "shutdown-delay", "window",
	"samples", "updated", "initial-status",
}

func TestStatusPage_ServesSelfContainedHTML(t *testing.T) {
	s := &Server{Handler: adminOKHandler(), DrainTime: time.Minute}
	adm := httptest.NewServer(s.AdminHandler(AdminOptions{Token: "t"})) // GET needs no token
	defer adm.Close()

	resp, err := http.Get(adm.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: status %d, want 200; body %q", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}

	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ids := pageElements(doc)
	for _, id := range pageIDs {
		if ids[id] == nil {
			t.Errorf("no element with id %q", id)
		}
	}

	// Nothing comes from elsewhere: no absolute or protocol-relative URL in
	// any attribute, no CSS url() or @import, no http(s) URL at all.
	for _, bad := range []string{"http://", "https://", "url(", "@import"} {
		if i := bytes.Index(body, []byte(bad)); i >= 0 {
			t.Errorf("page contains %q: …%s…", bad, body[max(i-40, 0):min(i+40, len(body))])
		}
	}
	var scripts, styles []string
	walkPage(doc, func(n *html.Node) {
		for _, a := range n.Attr {
			if (a.Key == "src" || a.Key == "href") && !strings.HasPrefix(a.Val, "data:") {
				t.Errorf("<%s %s=%q>: the page must not load anything", n.Data, a.Key, a.Val)
			}
		}
		switch {
		case n.DataAtom == atom.Script && len(n.Attr) == 0:
			scripts = append(scripts, pageText(n))
		case n.DataAtom == atom.Style:
			styles = append(styles, pageText(n))
		}
	})

	// The policy allows exactly the inline script and style, and fetches
	// from the page's own origin.
	csp := resp.Header.Get("Content-Security-Policy")
	if len(scripts) != 1 || len(styles) != 1 {
		t.Fatalf("%d scripts and %d styles, want one of each", len(scripts), len(styles))
	}
	for _, want := range []string{
		"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'",
		"script-src " + pageHash(scripts[0]), "style-src " + pageHash(styles[0]),
	} {
		if !strings.Contains(csp, want+";") && !strings.HasSuffix(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
	}

	// The first paint has the numbers: the status at the time of the
	// request is in the page.
	st := decodeAdminStatus(t, pageText(ids["initial-status"]))
	if st.State != "serving" || st.DrainTime != "1m0s" || !st.Ready {
		t.Errorf("initial status %+v, want serving, ready, drain time 1m0s", st)
	}

	// HEAD works; other methods on / are refused; only / is the page.
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"HEAD", "/", http.StatusOK},
		{"POST", "/", http.StatusMethodNotAllowed},
		{"GET", "/index.html", http.StatusNotFound},
		{"GET", "/status.html", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, adm.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
	}
}

func TestStatusPage_AnswersInvalidOptionsWith500(t *testing.T) {
	s := &Server{DrainTimeout: -1}
	rec := httptest.NewRecorder()
	s.AdminHandler(AdminOptions{}).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "DrainTimeout") {
		t.Errorf("status %d, body %q; want 500 naming DrainTimeout", rec.Code, rec.Body)
	}
}

// TestStatusPage_RendersLiveDrainInChromium loads the status page in
// headless Chromium while the server drains, and checks that the page shows
// the numbers of the server at that moment, fetched by the page itself: the
// page is served before the drain starts (its embedded first snapshot says
// "serving"), and only its polling can show the drain. The server's clock is
// stepped, so the drain stands still at 20% of its window while the browser
// looks.
func TestStatusPage_RendersLiveDrainInChromium(t *testing.T) {
	chromium := findChromium(t)

	const drainTime = 10 * time.Minute
	clock := newStepClock(time.Now())
	release := make(chan struct{}) // ends the blocked requests
	entered := make(chan struct{}, 3)
	mux := http.NewServeMux()
	mux.Handle("/ok", adminOKHandler())
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
	s := &Server{
		Handler:   mux,
		Protocols: &protos,
		DrainTime: drainTime,
		clock:     clock,
		// Proactive drain runs at 99.9% of the first quarter of the
		// window, 2m30s in: never while the browser looks.
		rand: func() float64 { return 0.999 },
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
		c, err := net.DialTimeout("tcp", addr, adminTimeout)
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
	var drainStarted sync.Once
	drainDone := make(chan error, 1)
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	t.Cleanup(func() {
		close(release)
		cancelDrain() // cuts the drain short: every connection is closed now
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.Drain(ctx) // in case the drain never started; else waits for it
		drainStarted.Do(func() { drainDone <- context.Canceled })
		if err := <-drainDone; !errors.Is(err, context.Canceled) {
			t.Errorf("Drain: %v, want context.Canceled", err)
		}
		select {
		case err := <-served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve: %v, want http.ErrServerClosed", err)
			}
		case <-time.After(adminTimeout):
			t.Error("Serve did not return after the drain")
		}
		for _, c := range conns {
			c.Close()
		}
		h2c.CloseIdleConnections()
	})
	for range 2 {
		c := send("/ok")
		c.SetDeadline(time.Now().Add(adminTimeout))
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
		case <-time.After(adminTimeout):
			t.Fatal("requests did not reach their handlers")
		}
	}
	resp, err := (&http.Client{Transport: h2c, Timeout: adminTimeout}).Get("http://" + addr + "/ok")
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
	if !pageWait(func() bool {
		st := s.Stats()
		return st.Accepted == 6 && fmt.Sprint(st.Open) == fmt.Sprint(want)
	}) {
		t.Fatalf("connections %+v, want 6 accepted, open %v", s.Stats(), want)
	}

	// The admin handler under a prefix, as an application would mount it.
	// The page is served first; then the drain starts and the clock jumps
	// to 20% of the window, before the browser has run the page's script.
	admin := http.StripPrefix("/debug/drain", s.AdminHandler(AdminOptions{}))
	adm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.ServeHTTP(w, r)
		if r.URL.Path == "/debug/drain/" {
			drainStarted.Do(func() {
				go func() { drainDone <- s.Drain(drainCtx) }()
				if !pageWait(func() bool { return s.mgr.Status().Draining }) {
					t.Error("the drain window did not start")
				}
				clock.Advance(drainTime / 5)
			})
		}
	}))
	t.Cleanup(adm.Close)

	dir := t.TempDir()
	shot := filepath.Join(dir, "statuspage.png")
	dom := runChromium(t, chromium, adm.URL+"/debug/drain/",
		"--virtual-time-budget=5000", "--dump-dom", "--screenshot="+shot, "--window-size=1200,800")

	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	ids := pageElements(doc)
	text := func(id string) string {
		if ids[id] == nil {
			t.Fatalf("rendered page has no #%s:\n%s", id, dom)
		}
		return strings.TrimSpace(pageText(ids[id]))
	}
	if st := decodeAdminStatus(t, text("initial-status")); st.State != "serving" {
		t.Fatalf("the page was served in state %q, want serving (before the drain)", st.State)
	}
	if n, err := strconv.Atoi(text("samples")); err != nil || n < 3 {
		t.Errorf("#samples %q: the page did not poll status (want at least 3 samples)", text("samples"))
	}
	for id, want := range map[string]string{
		"state":          "draining",
		"ready":          "not ready",
		"healthcheck":    "health check ok",
		"strategy":       "gradual",
		"live":           "live",
		"progress-label": "20.0% of the 10m0s window",
		"time-left":      "8m 00s left",
		"open-total":     "6",
		"open-active":    "2",
		"open-idle":      "3",
		"open-new":       "0",
		"open-hijacked":  "1",
		"accepted":       "6",
		"drained":        "0",
		"forced":         "0",
		"listeners":      "1",
		"drain-time":     "10m0s",
	} {
		if got := text(id); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	if p, err := strconv.ParseFloat(pageAttr(ids["progress"], "data-progress"), 64); err != nil || p < 0.199 || p > 0.201 {
		t.Errorf("#progress data-progress %q, want 0.2", pageAttr(ids["progress"], "data-progress"))
	}
	rows := map[string]string{}
	walkPage(ids["protocols"], func(n *html.Node) {
		if n.DataAtom == atom.Tr {
			rows[pageAttr(n, "data-protocol")] = strings.Join(pageCells(n), " ")
		}
	})
	for proto, want := range map[string]string{"http/1.1": "http/1.1 0 2 2 1 5", "h2": "h2 0 0 0 0 0", "h2c": "h2c 0 0 1 0 1"} {
		if rows[proto] != want {
			t.Errorf("protocol row %q = %q, want %q", proto, rows[proto], want)
		}
	}
	areas, bands := 0, 0
	walkPage(ids["chart"], func(n *html.Node) {
		switch class := pageAttr(n, "class"); {
		case n.Data == "path" && strings.HasPrefix(class, "a-"):
			areas++
		case n.Data == "rect" && class == "band":
			bands++
		}
	})
	if areas < len(trackedStates) || bands != 1 {
		t.Errorf("chart has %d areas and %d drain window bands, want one area per state and one band", areas, bands)
	}
	// The DOM agrees with the server.
	if st := s.Stats(); st.OpenTotal != 6 || st.Accepted != 6 {
		t.Errorf("server stats %+v, want the 6 connections the page shows", st)
	}

	checkScreenshot(t, shot)
	if out := os.Getenv("DRAINHTTP_STATUSPAGE_PNG"); out != "" { // to look at it
		if b, err := os.ReadFile(shot); err == nil {
			os.WriteFile(out, b, 0o644)
		}
	}
}

// checkScreenshot checks that the PNG at path is 1200×800 and shows the
// picture: the draining progress bar and the active and idle areas of the
// chart, in the page's colours.
func checkScreenshot(t *testing.T, path string) {
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
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 800 {
		t.Errorf("screenshot is %v, want 1200×800", b)
	}
	for name, c := range map[string][3]int{
		"draining bar (#e06a1b)": {0xe0, 0x6a, 0x1b},
		"active area (#2f9e62)":  {0x2f, 0x9e, 0x62},
		"idle area (#e5b83a)":    {0xe5, 0xb8, 0x3a},
	} {
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
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "headless Chromium not found on PATH (Debian: apt-get install -y --no-install-recommends chromium)"
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
// process is killed if it outlives chromiumTimeout or the test.
func runChromium(t *testing.T, chromium, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	args = append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
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

// pageWait polls cond until it holds, for at most adminTimeout, and
// reports whether it did.
func pageWait(cond func() bool) bool {
	deadline := time.Now().Add(adminTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// pageHash is the CSP source expression of an inline script or style.
func pageHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func walkPage(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walkPage(c, f)
	}
}

// pageElements maps ids to elements.
func pageElements(doc *html.Node) map[string]*html.Node {
	ids := map[string]*html.Node{}
	walkPage(doc, func(n *html.Node) {
		if id := pageAttr(n, "id"); n.Type == html.ElementNode && id != "" {
			ids[id] = n
		}
	})
	return ids
}

func pageAttr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// pageText is n's text content.
func pageText(n *html.Node) string {
	var b strings.Builder
	walkPage(n, func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
	})
	return b.String()
}

// pageCells is the text of each cell of a table row.
func pageCells(tr *html.Node) []string {
	var cells []string
	for c := tr.FirstChild; c != nil; c = c.NextSibling {
		if c.DataAtom == atom.Td || c.DataAtom == atom.Th {
			cells = append(cells, strings.TrimSpace(pageText(c)))
		}
	}
	return cells
}

// stepClock is a Clock that stands still until Advance moves it. Its
// timers fire when Advance reaches them, each in its own goroutine; a
// timer for zero or less fires at once, like time.AfterFunc's.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*stepTimer
}

type stepTimer struct {
	c    *stepClock
	at   time.Time
	f    func()
	done bool // fired or stopped
}

func newStepClock(now time.Time) *stepClock { return &stepClock{now: now} }

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &stepTimer{c: c, at: c.now.Add(d), f: f}
	if d <= 0 {
		t.done = true
		go f()
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock forward by d and fires the timers it reaches.
func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.at.After(c.now):
			t.done = true
			due = append(due, t.f)
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}

func (t *stepTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}
