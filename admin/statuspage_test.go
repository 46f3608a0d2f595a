package admin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// pageIDs are the elements the status page fills in, which tests and
// people's scripts may rely on.
var pageIDs = []string{
	"state", "phase", "ready", "healthcheck", "strategy", "live", "banner", "banner-title", "banner-text",
	"progress", "progress-label", "time-left", "timeline",
	"open-total", "accepted", "drained", "drained-reasons", "forced", "goaways", "listeners",
	"chart", "open-active", "open-idle", "open-new", "open-hijacked",
	"protocols", "protocols-total", "drain-time", "drain-timeout", "shutdown-delay", "window", "adaptive",
	"samples", "updated", "initial-status",
}

func TestStatusPage_ServesSelfContainedHTML(t *testing.T) {
	s := &drainhttp.Server{Handler: okHandler(), DrainTime: time.Minute}
	adm := httptest.NewServer(New(s, Options{Token: "t"})) // GET needs no token
	defer adm.Close()
	client := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	defer client.CloseIdleConnections()

	resp, err := client.Get(adm.URL + "/")
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
		"Referrer-Policy":        "no-referrer",
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
	if _, hidden := pageAttrOK(ids["banner"], "hidden"); !hidden {
		t.Error("the server-gone banner is shown before the page has polled")
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
			if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s %s=%q>: inline attributes would need 'unsafe-inline'", n.Data, a.Key, a.Val)
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
		"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'",
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
	st := decodeStatus(t, pageText(ids["initial-status"]))
	if st.State != "serving" || st.Phase != "serving" || st.DrainTime != "1m0s" || !st.Ready {
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
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
	}
}

func TestStatusPage_EmbedsAStatusThatCannotCloseItsScript(t *testing.T) {
	// A Host cannot carry "</script>", but the page must not depend on
	// that: json.Marshal escapes <, > and &.
	s := &drainhttp.Server{Handler: okHandler()}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "localhost"
	New(s, Options{}).ServeHTTP(rec, req)
	body := rec.Body.String()
	_, rest, _ := strings.Cut(body, `id="initial-status">`)
	data, _, _ := strings.Cut(rest, "</script>")
	if strings.ContainsAny(data, "<>") {
		t.Errorf("embedded status contains < or >: %s", data)
	}
	if c := strings.Count(body, "</script>"); c != 2 {
		t.Errorf("%d </script> in the page, want 2", c)
	}
}

func TestStatusPage_AnswersInvalidOptionsWith500(t *testing.T) {
	s := &drainhttp.Server{DrainTimeout: -1}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "127.0.0.1:9901"
	New(s, Options{}).ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "DrainTimeout") {
		t.Errorf("status %d, body %q; want 500 naming DrainTimeout", rec.Code, rec.Body)
	}
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
	v, _ := pageAttrOK(n, key)
	return v
}

func pageAttrOK(n *html.Node, key string) (string, bool) {
	if n == nil {
		return "", false
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
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

// pageChildren returns the element children of n.
func pageChildren(n *html.Node) []*html.Node {
	var out []*html.Node
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode {
			out = append(out, c)
		}
	}
	return out
}
