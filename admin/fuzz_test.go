package admin

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/drainhttp/drainhttp"
	"golang.org/x/net/http/httpguts"
)

// fuzzCodes are the only status codes the handler may answer with: its
// own, ServeMux's redirects to a cleaned path, and ReadyHandler's 503.
var fuzzCodes = map[int]bool{
	http.StatusOK: true, http.StatusAccepted: true,
	http.StatusMovedPermanently: true, http.StatusTemporaryRedirect: true, http.StatusPermanentRedirect: true,
	http.StatusBadRequest: true, http.StatusUnauthorized: true, http.StatusForbidden: true,
	http.StatusNotFound: true, http.StatusMethodNotAllowed: true, http.StatusMisdirectedRequest: true,
	http.StatusServiceUnavailable: true,
}

// FuzzHandler sends the handler arbitrary methods, targets (paths and query
// strings) and Host, Authorization, Origin and Sec-Fetch-Site headers, as
// net/http's server would pass them on: it must not panic, must answer
// with an expected status code, must refuse every Host that is not on its
// allowlist, and must change the server only when it says it did.
func FuzzHandler(f *testing.F) {
	const token = "tok"
	for _, seed := range [][6]string{
		{"GET", "/", "127.0.0.1:9901", "", "", ""},
		{"GET", "/status", "localhost", "", "", ""},
		{"HEAD", "/ready", "[::1]:9901", "", "", ""},
		{"GET", "/metrics", "admin.internal", "", "", ""},
		{"POST", "/healthcheck/fail", "evil.example", "Bearer tok", "", "same-origin"}, // DNS rebinding
		{"POST", "/healthcheck/fail", "127.0.0.1:9901", "Bearer tok", "", "same-origin"},
		{"POST", "/healthcheck/ok", "127.0.0.1:9901", "bearer tok", "http://127.0.0.1:9901", ""},
		{"POST", "/healthcheck/fail", "127.0.0.1:9901", "Bearer tok", "https://evil.example", ""},
		{"POST", "/healthcheck/fail", "localhost", "Basic tok", "", "cross-site"},
		{"POST", "/drain?strategy=fast", "localhost", "Bearer tok", "", ""},
		{"POST", "/drain?strategy=%zz", "localhost", "Bearer tok", "", ""},
		{"POST", "/drain?strategy=gradual&strategy=immediate", "app.ns.svc.local:9901", "Bearer tok", "", "none"},
		{"POST", "/drain?strategy=immediate", "localhost", "Bearer tok", "", ""},
		{"DELETE", "/drain", "localhost", "", "", ""},
		{"GET", "//status/../ready", "localhost", "", "", ""},
		{"GET", "/status/", "localhost", "", "", ""},
		{"OPTIONS", "*", "localhost", "", "", ""},
		{"CONNECT", "/status", "localhost", "", "", ""},
		{"GET", "/ready", "", "", "", ""},
		{"GET", "/ready", "10.1.2.3:1", "", "", ""},
		{"GET", "/ready", "LOCALHOST.:1", "", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4], seed[5])
	}
	s := &drainhttp.Server{Handler: okHandler()} // never served: a drain is immediate and has nothing to wait for
	h := New(s, Options{Token: token, Metrics: okHandler(), AllowedHosts: []string{"admin.internal", "*.svc.local:9901"}})
	m, err := s.Manager()
	if err != nil {
		f.Fatal(err)
	}
	local := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9901}
	f.Fuzz(func(t *testing.T, method, target, host, auth, origin, site string) {
		// What net/http's server refuses before any handler sees it.
		if method == "" || !httpguts.ValidHeaderFieldName(method) || !httpguts.ValidHostHeader(host) {
			return
		}
		for _, v := range []string{auth, origin, site} {
			if !httpguts.ValidHeaderFieldValue(v) {
				return
			}
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		r := &http.Request{
			Method: method, URL: u, RequestURI: target, Host: host,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: http.NoBody, RemoteAddr: "192.0.2.1:4321",
		}
		for k, v := range map[string]string{"Authorization": auth, "Origin": origin, "Sec-Fetch-Site": site} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		r = r.WithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, local))

		failedBefore, phaseBefore := m.HealthCheckFailed(), s.Status().Phase
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		code := rec.Code

		if !fuzzCodes[code] {
			t.Fatalf("%s %q Host %q: status %d; body %q", method, target, host, code, rec.Body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s %q: no Cache-Control: no-store", method, target)
		}
		if foreignHost(host) && code != http.StatusMisdirectedRequest {
			t.Fatalf("%s %q Host %q: status %d, want 421 for a host off the allowlist", method, target, host, code)
		}
		if failed := m.HealthCheckFailed(); failed != failedBefore &&
			!(code == http.StatusOK && method == "POST" && strings.HasPrefix(u.Path, "/healthcheck/")) {
			t.Fatalf("%s %q Host %q (status %d) changed the health check", method, target, host, code)
		}
		if phase := s.Status().Phase; phase != phaseBefore && !(code == http.StatusAccepted && u.Path == "/drain") {
			t.Fatalf("%s %q Host %q (status %d) moved the server from %v to %v", method, target, host, code, phaseBefore, phase)
		}
		if (code == http.StatusOK || code == http.StatusAccepted) && method == "POST" && !bearer(auth, token) {
			t.Fatalf("POST %q succeeded (%d) with Authorization %q", target, code, auth)
		}
	})
}

// bearer reports whether auth is "Bearer <token>", the scheme in any case.
func bearer(auth, token string) bool {
	scheme, tok, ok := strings.Cut(auth, " ")
	return ok && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(tok) == token
}

// foreignHost reports whether host is plainly off the fuzzed handler's
// allowlist: a name with a letter that is neither a loopback name nor one
// of its AllowedHosts, nor an IPv6 literal. It errs on the side of false.
func foreignHost(host string) bool {
	h := strings.ToLower(host)
	for _, ok := range []string{"localhost", "admin.internal", ".svc.local", "[", "*"} {
		if strings.Contains(h, ok) {
			return false
		}
	}
	return strings.ContainsAny(h, "ghijklmnopqrstuvwxyz") // not hex: cannot be an address
}
