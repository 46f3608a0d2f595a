package admin

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// statusPageHTML is the status page that New's handler serves on GET /: one
// self-contained file (inline CSS, JavaScript and SVG; no external asset)
// that polls GET status, a relative URL so that the page also works under
// http.StripPrefix, once a second and draws the shutdown from the answers.
// statusPageMarker in it is replaced by the Status at the time of the
// request, so that the first paint shows current numbers.
//
//go:embed statuspage.html
var statusPageHTML string

// statusPageMarker marks where the initial Status JSON goes, inside a
// <script type="application/json"> data block.
const statusPageMarker = "{{status}}"

// statusPageParts is statusPageHTML cut at statusPageMarker, with the
// Content-Security-Policy that lets its inline style and script run, and
// nothing else.
type statusPageParts struct {
	head, tail string
	csp        string
}

// loadStatusPage cuts statusPageHTML once. The page has one <style> element
// and one <script> element without attributes: the policy allows exactly
// those by hash, fetches from the same origin (the polling) and the empty
// data: favicon; it forbids frames, forms, plugins and <base>.
var loadStatusPage = sync.OnceValue(func() statusPageParts {
	head, tail, ok := strings.Cut(statusPageHTML, statusPageMarker)
	if !ok {
		panic("drainhttp/admin: statuspage.html lacks " + statusPageMarker) // caught by the tests
	}
	return statusPageParts{
		head: head,
		tail: tail,
		csp: "default-src 'none'; " +
			"script-src " + cspHash(statusPageHTML, "<script>", "</script>") + "; " +
			"style-src " + cspHash(statusPageHTML, "<style>", "</style>") + "; " +
			"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	}
})

// cspHash returns the CSP source expression ('sha256-…') of the text between
// the first open tag and the following close tag in page.
func cspHash(page, open, close string) string {
	_, rest, ok := strings.Cut(page, open)
	body, _, ok2 := strings.Cut(rest, close)
	if !ok || !ok2 {
		panic("drainhttp/admin: statuspage.html lacks " + open + "…" + close) // caught by the tests
	}
	sum := sha256.Sum256([]byte(body))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// statusPage serves the status page, with the current Status in it. The
// handler has set Cache-Control: no-store.
func (h *handler) statusPage(w http.ResponseWriter, r *http.Request) {
	p := loadStatusPage()
	// json.Marshal escapes <, > and &, so the document cannot close the
	// <script> element it sits in.
	status, err := json.Marshal(Snapshot(h.s))
	if err != nil { // cannot happen: Status has only plain fields
		http.Error(w, "drainhttp/admin: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", p.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	io.WriteString(w, p.head)
	w.Write(status)
	io.WriteString(w, p.tail)
}
