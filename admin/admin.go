package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/drainhttp/drainhttp"
)

// Options configures New. The zero value is a valid configuration: no
// token, no /metrics, logs to the server's Logger, and requests accepted for
// loopback hosts and the address the handler was reached at.
type Options struct {
	// Token, if not empty, is the bearer token that every POST endpoint
	// requires: a request without "Authorization: Bearer <Token>" (the
	// scheme in any case) is answered 401 with a WWW-Authenticate: Bearer
	// challenge. The comparison takes constant time. GET endpoints stay
	// open. Empty (the default) means no token: rely on the listener being
	// private. Envoy's admin interface has no authentication at all.
	Token string
	// Metrics, if not nil, serves GET /metrics, for example a promhttp
	// handler over a registry that drainhttp/drainprom fills. It is the
	// caller's: this package registers nothing. Nil (the default) means
	// /metrics is not found (404). Envoy: /stats/prometheus.
	Metrics http.Handler
	// Logger receives one Info record per operator action (drain, health
	// check fail or ok) and one Warn record per request refused for its
	// token, Host or origin, or for being served by the server itself. Nil
	// means the server's Logger, and so no logs if that is nil too.
	Logger *slog.Logger
	// AllowedHosts widens the Host allowlist, which guards against DNS
	// rebinding (see New). Each entry is a host name or IP address, matched
	// case-insensitively against the request's Host without its port, with
	// or without a trailing dot; "*.example.com" matches every name under
	// example.com but not example.com itself; an entry with a port
	// ("admin.internal:9901", "[fd00::1]:9901") matches that port only;
	// "*" alone allows every Host, which is only safe behind a proxy that
	// checks Host itself. Nil (the default) allows loopback and the
	// handler's own address alone.
	AllowedHosts []string
}

// New returns an http.Handler modelled on Envoy's admin interface for s, to
// be served on a private listener by a plain http.Server:
//
//	GET  /                  a status page (HTML) that refreshes itself from
//	                        status every second and draws the shutdown: its
//	                        state and phase timeline, a progress bar for the
//	                        drain window, and a chart of open connections by
//	                        state over the last five minutes. It says so when
//	                        the server stops answering. Self-contained
//	                        (inline CSS, JavaScript and SVG, allowed by a
//	                        Content-Security-Policy with their hashes).
//	GET  /ready             s.ReadyHandler(): 200 "ok", or 503 "draining"
//	GET  /status            Status as JSON
//	POST /drain             s.StartDrain(), then 202 and the Status once
//	                        the drain has started: readiness has failed and,
//	                        without a shutdown delay, the window runs (its
//	                        started and deadline are set). ?strategy=immediate
//	                        is s.StartDrainNow() instead, which also cuts
//	                        short a drain already running, and answers once
//	                        the window is over (phase closing_listeners or
//	                        later); ?strategy=gradual (or none) keeps the
//	                        server's own Strategy. Any other value is a 400.
//	                        Calling it again is harmless; once the server is
//	                        done it does nothing.
//	POST /healthcheck/fail  HealthCheckFail on s.Manager(); 200 and the Status
//	POST /healthcheck/ok    HealthCheckOK on s.Manager(); 200 and the Status
//	GET  /metrics           opts.Metrics, if not nil
//
// GET also accepts HEAD. Any other path is 404, and any other method on a
// known path is 405 with an Allow header. Every answer carries
// Cache-Control: no-store. Envoy: /ready, /drain_listeners,
// /healthcheck/fail, /healthcheck/ok, /stats/prometheus.
//
// Every request passes these checks, in this order:
//
//  1. A request that s itself serves (s.Served) is answered 421 Misdirected
//     Request: the admin port would be drained and closed with the server
//     it administers.
//  2. Its Host must be on the allowlist, else 421 Misdirected Request: a
//     loopback name (localhost, *.localhost) or address (127.0.0.0/8, ::1),
//     with any port (a Host whose port is not a number matches nothing);
//     the IP address of the connection's own end
//     (http.LocalAddrContextKey), so that a probe or a curl to the pod's or
//     host's address works; or an entry of opts.AllowedHosts. Without it a
//     web page on evil.example whose name the attacker re-points at
//     127.0.0.1 (DNS rebinding) is same-origin with the admin port: the
//     browser sends it Sec-Fetch-Site: same-origin, so cross-origin
//     protection passes it, and it can read /status and POST. Such a page
//     cannot forge Host, which is evil.example. Names are never resolved,
//     which would reopen the hole. 421 rather than 403: RFC 9110 gives 421
//     for a request sent to a server that is not configured to answer for
//     its authority, which is exactly this, and it tells an operator to fix
//     the name rather than the credentials.
//  3. The method and path are routed (404, 405).
//  4. POST endpoints refuse cross-origin browser requests with 403
//     (http.CrossOriginProtection), so that a page elsewhere cannot drain
//     the server through a visitor's browser; curl and other non-browser
//     clients are not affected.
//  5. POST endpoints require opts.Token if it is set (401).
//  6. If s's options are invalid, every endpoint but /metrics answers 500
//     with the error.
//
// Like any method of s, the handler's first request validates s's options
// and fixes them: set every field of s before the handler is served. New
// panics if s is nil. The handler is safe for concurrent use.
func New(s *drainhttp.Server, opts Options) http.Handler {
	if s == nil {
		panic("drainhttp/admin: New with a nil *drainhttp.Server")
	}
	h := &handler{
		s:     s,
		opts:  opts,
		hosts: newHostPolicy(opts.AllowedHosts),
		cop:   http.NewCrossOriginProtection(),
	}
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		h.tokenSum = sum[:]
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", h.valid(h.statusPage))
	mux.Handle("GET /ready", h.valid(s.ReadyHandler().ServeHTTP))
	mux.Handle("GET /status", h.valid(h.status))
	mux.Handle("POST /drain", h.mutating(h.drain))
	mux.Handle("POST /healthcheck/fail", h.mutating(h.healthCheck(true)))
	mux.Handle("POST /healthcheck/ok", h.mutating(h.healthCheck(false)))
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	h.mux = mux
	return h
}

type handler struct {
	s        *drainhttp.Server
	opts     Options
	hosts    hostPolicy
	cop      *http.CrossOriginProtection
	tokenSum []byte // sha256 of opts.Token; nil means no token
	mux      *http.ServeMux
}

// ServeHTTP runs checks 1 and 2 of New, then routes.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if h.s.Served(r) {
		h.logger().Warn("drainhttp/admin: request refused: served by the server it administers",
			"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, "drainhttp/admin: this admin handler is served by the drainhttp.Server it administers, "+
			"which would drain and close it along with everything else; "+
			"serve it on a separate listener with a plain http.Server", http.StatusMisdirectedRequest)
		return
	}
	if !h.hosts.allows(r) {
		h.logger().Warn("drainhttp/admin: request refused: Host not allowed",
			"host", r.Host, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, fmt.Sprintf("drainhttp/admin: Host %q is not allowed: this admin handler answers only for "+
			"loopback names and addresses (localhost, 127.0.0.1, [::1]) and the address it was reached at%s; "+
			"add the name to admin.Options.AllowedHosts to allow it (the check guards against DNS rebinding)",
			r.Host, localAddrNote(r)), http.StatusMisdirectedRequest)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// localAddrNote names the address r arrived at, for the Host error.
func localAddrNote(r *http.Request) string {
	if ip, ok := localIP(r); ok {
		return " (" + ip.String() + ")"
	}
	return ""
}

func (h *handler) logger() *slog.Logger {
	switch {
	case h.opts.Logger != nil:
		return h.opts.Logger
	case h.s.Logger != nil:
		return h.s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// valid answers 500 if the server's options are invalid.
func (h *handler) valid(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := h.s.Manager(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f(w, r)
	})
}

// mutating guards a POST endpoint: cross-origin protection, then the token,
// then the options check.
func (h *handler) mutating(f http.HandlerFunc) http.Handler {
	valid := h.valid(f)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.cop.Check(r); err != nil {
			h.logger().Warn("drainhttp/admin: request refused: cross-origin",
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
			http.Error(w, "drainhttp/admin: cross-origin request refused: "+err.Error(), http.StatusForbidden)
			return
		}
		if h.tokenSum != nil && !h.authorized(r) {
			h.logger().Warn("drainhttp/admin: request refused: bad or missing token",
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="drainhttp admin"`)
			http.Error(w, "drainhttp/admin: missing or invalid bearer token", http.StatusUnauthorized)
			return
		}
		valid.ServeHTTP(w, r)
	})
}

// authorized reports whether r carries the bearer token. Comparing hashes
// keeps the comparison constant-time in the token's length too.
func (h *handler) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum) == 1
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, http.StatusOK, Snapshot(h.s))
}

func (h *handler) drain(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "drainhttp/admin: bad query: "+err.Error(), http.StatusBadRequest)
		return
	}
	immediate := false
	if v := q.Get("strategy"); v != "" {
		st, err := drainhttp.ParseStrategy(v)
		if err != nil {
			http.Error(w, "drainhttp/admin: bad strategy parameter: "+err.Error(), http.StatusBadRequest)
			return
		}
		immediate = st == drainhttp.Immediate
	}
	select {
	case <-h.s.Done():
		// Drained, shut down or closed already: nothing is left to drain.
		writeStatus(w, http.StatusAccepted, Snapshot(h.s))
		return
	default:
	}
	strategy := h.s.Status().Drain.Strategy
	start := h.s.StartDrain
	if immediate {
		strategy, start = drainhttp.Immediate, h.s.StartDrainNow
	}
	h.logger().Info("drainhttp/admin: drain requested", "strategy", strategy.String(), "remote", r.RemoteAddr)
	if err := start(); err != nil { // the options were valid a moment ago
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if immediate {
		// StartDrainNow returns before the drain's goroutine has cut a
		// running window (or shutdown delay) short: wait for that, so
		// that the answer shows the window over.
		waitPhase(h.s, drainhttp.PhaseClosingListeners, hurryWait)
	}
	writeStatus(w, http.StatusAccepted, Snapshot(h.s))
}

// hurryWait bounds how long POST /drain?strategy=immediate waits for the
// drain to reach PhaseClosingListeners. A hurried drain gets there within a
// few goroutine switches; the bound only keeps a server whose OnPhase
// functions are slow from stalling the answer, which then shows an earlier
// phase.
const hurryWait = time.Second

// waitPhase waits until s has reached phase p or a later one, or is done,
// for at most max.
func waitPhase(s *drainhttp.Server, p drainhttp.Phase, max time.Duration) {
	reached := make(chan struct{})
	var once sync.Once
	cancel := s.OnPhase(func(pc drainhttp.PhaseChange) {
		if pc.Phase >= p {
			once.Do(func() { close(reached) })
		}
	})
	defer cancel()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-reached:
	case <-s.Done():
	case <-t.C:
	}
}

func (h *handler) healthCheck(fail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := h.s.Manager()
		if err != nil { // valid has checked
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if fail {
			h.logger().Info("drainhttp/admin: health check failed", "remote", r.RemoteAddr)
			m.HealthCheckFail()
		} else {
			h.logger().Info("drainhttp/admin: health check ok", "remote", r.RemoteAddr)
			m.HealthCheckOK()
		}
		writeStatus(w, http.StatusOK, Snapshot(h.s))
	}
}

func writeStatus(w http.ResponseWriter, code int, st Status) {
	body, err := json.MarshalIndent(st, "", "  ")
	if err != nil { // cannot happen: Status has only plain fields
		http.Error(w, "drainhttp/admin: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
