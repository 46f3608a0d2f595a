package drainhttp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// AdminOptions configures AdminHandler. The zero value is valid: no token,
// no metrics endpoint, logs to the server's Logger.
type AdminOptions struct {
	// Token, if not empty, is the bearer token that every mutating (POST)
	// endpoint requires: a request without "Authorization: Bearer <Token>"
	// is answered 401 with a WWW-Authenticate: Bearer challenge. The
	// comparison takes constant time. Read-only (GET) endpoints stay open.
	// Empty (the default) means no authentication: rely on the listener
	// being private. Envoy's admin interface has no authentication at all.
	Token string
	// Metrics, if not nil, serves GET /metrics (for example a promhttp
	// handler). Nil (the default) means /metrics is not found (404).
	// Envoy: /stats/prometheus.
	Metrics http.Handler
	// Logger receives one Info record per operator action (drain,
	// health-check fail or ok) and one Warn record per rejected token.
	// Nil means the server's Logger, and so no logs if that is nil too.
	Logger *slog.Logger
}

// AdminStatus is the JSON document that AdminHandler serves on GET /status
// and in answer to its POST endpoints: a snapshot of the server's drain and
// connections.
type AdminStatus struct {
	// State is where the server is in its drain. It only moves forward:
	//   - "serving": no drain has started (the health check may be failed;
	//     see Ready).
	//   - "shutdown_delay": Drain started and ShutdownDelay runs: the server
	//     serves normally while ReadyHandler fails.
	//   - "draining": the drain window runs (DrainTime): connections are told
	//     to close as the Strategy says. A drain of the Manager alone
	//     (Manager().StartDrainSequence) stays here, even once complete:
	//     the server goes on accepting.
	//   - "closing": the window is over and the listeners are closed; the
	//     remaining connections are closing, each by its DrainTimeout
	//     deadline.
	//   - "drained": Drain has finished: no connection is left.
	//   - "closed": Shutdown or Close ran without Drain.
	State string `json:"state"`
	// Ready is what ReadyHandler answers: true while new traffic is welcome.
	Ready bool `json:"ready"`
	// HealthCheckFailed is true between POST /healthcheck/fail and POST
	// /healthcheck/ok (or Manager().HealthCheckFail and HealthCheckOK).
	HealthCheckFailed bool `json:"health_check_failed"`
	// Strategy is "gradual" or "immediate": that of the running drain, or
	// the configured one before any drain. An immediate drain requested
	// during a gradual one shows as "immediate".
	Strategy string `json:"strategy"`
	// DrainTime, DrainTimeout and ShutdownDelay are the server's options
	// (after defaults), as Go durations ("10s", "1m30s").
	DrainTime     string `json:"drain_time"`
	DrainTimeout  string `json:"drain_timeout"`
	ShutdownDelay string `json:"shutdown_delay"`
	// Progress is the elapsed fraction of the drain window, from 0 before
	// the drain to 1 at its end (at once for an immediate drain).
	Progress float64 `json:"progress"`
	// Started and Deadline bound the drain window (jitter included); null
	// before the window starts. TimeLeftSeconds is Deadline minus Now, not
	// below 0; null before the window starts.
	Started         *time.Time `json:"started"`
	Deadline        *time.Time `json:"deadline"`
	TimeLeftSeconds *float64   `json:"time_left_seconds"`
	// Now is the server's clock at the snapshot, to compare with Started
	// and Deadline without trusting the reader's clock.
	Now time.Time `json:"now"`
	// Listeners is the number of listeners the server is accepting on.
	Listeners int `json:"listeners"`
	// Connections are the server's connection counters (Server.Stats).
	Connections Stats `json:"connections"`
}

// AdminHandler returns an http.Handler modelled on Envoy's admin interface,
// to be served on a private listener by a plain http.Server (not by s
// itself, which would drain it and close it with the rest):
//
//	GET  /                  a status page (HTML) that refreshes itself from
//	                        /status every second and draws the drain: its
//	                        state, a progress bar for the drain window and
//	                        a chart of open connections by state over the
//	                        last five minutes. Self-contained; needs
//	                        JavaScript.
//	GET  /ready             ReadyHandler: 200 "ok", or 503 "draining"
//	GET  /status            AdminStatus as JSON
//	POST /drain             start Drain in the background; 202 and the status.
//	                        ?strategy=immediate runs DrainNow instead, and cuts
//	                        short a drain already running; ?strategy=gradual
//	                        (or none) runs Drain with the server's Strategy.
//	                        Any other value is a 400. Calling it again is
//	                        harmless.
//	POST /healthcheck/fail  Manager().HealthCheckFail; 200 and the status
//	POST /healthcheck/ok    Manager().HealthCheckOK; 200 and the status
//	GET  /metrics           opts.Metrics, if not nil
//
// GET also accepts HEAD. Any other path is 404, and any other method on a
// known path is 405 with an Allow header. POST endpoints require opts.Token
// if it is set (401 otherwise), and refuse cross-origin browser requests
// (403, http.CrossOriginProtection) so that a web page cannot drain a server
// on localhost; curl and other non-browser clients are not affected. Every
// answer carries Cache-Control: no-store. The paths are absolute: to mount
// the handler under a prefix, use http.StripPrefix, and open the status
// page with the trailing slash (/admin/, not /admin), since it fetches
// status relative to its own URL.
//
// POST /drain starts the drain and answers at once: readiness has failed by
// then; follow GET /status for the rest.
//
// If the server's options are invalid, every endpoint but /metrics answers
// 500 with the error. Envoy: /ready, /drain_listeners, /healthcheck/fail,
// /healthcheck/ok, /stats/prometheus.
func (s *Server) AdminHandler(opts AdminOptions) http.Handler {
	a := &admin{s: s, opts: opts}
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		a.tokenSum = sum[:]
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", a.valid(http.HandlerFunc(a.statusPage)))
	mux.Handle("GET /ready", a.valid(s.ReadyHandler()))
	mux.Handle("GET /status", a.valid(http.HandlerFunc(a.status)))
	mux.Handle("POST /drain", a.mutating(a.drain))
	mux.Handle("POST /healthcheck/fail", a.mutating(a.healthCheck(true)))
	mux.Handle("POST /healthcheck/ok", a.mutating(a.healthCheck(false)))
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

type admin struct {
	s        *Server
	opts     AdminOptions
	tokenSum []byte // sha256 of opts.Token; nil means no token
}

func (a *admin) logger() *slog.Logger {
	if a.opts.Logger != nil {
		return a.opts.Logger
	}
	return a.s.log // set by a successful init
}

// valid answers 500 if the server's options are invalid.
func (a *admin) valid(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.s.init(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// mutating guards a POST endpoint: cross-origin protection, then the token,
// then the options check.
func (a *admin) mutating(h http.HandlerFunc) http.Handler {
	authed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.tokenSum != nil && !a.authorized(r) {
			if a.s.init() == nil {
				a.logger().Warn("drainhttp: admin request rejected: bad or missing token",
					"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="drainhttp admin"`)
			http.Error(w, "drainhttp: admin: missing or invalid bearer token", http.StatusUnauthorized)
			return
		}
		a.valid(h).ServeHTTP(w, r)
	})
	return http.NewCrossOriginProtection().Handler(authed)
}

// authorized reports whether r carries the bearer token. Comparing hashes
// keeps the comparison constant-time in the token's length too.
func (a *admin) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum) == 1
}

func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	a.writeStatus(w, http.StatusOK)
}

func (a *admin) drain(w http.ResponseWriter, r *http.Request) {
	immediate := false
	if v := r.URL.Query().Get("strategy"); v != "" {
		st, err := ParseStrategy(v)
		if err != nil {
			http.Error(w, "drainhttp: admin: bad strategy parameter: "+err.Error(), http.StatusBadRequest)
			return
		}
		immediate = st == Immediate
	}
	strategy := a.s.mgr.opts.Strategy
	if immediate {
		strategy = Immediate
	}
	a.logger().Info("drainhttp: admin: drain requested", "strategy", strategy.String(), "remote", r.RemoteAddr)
	// What Drain and DrainNow start, without waiting for the end.
	if immediate {
		a.s.hurryUp()
	}
	a.s.startDrain(false)
	a.writeStatus(w, http.StatusAccepted)
}

func (a *admin) healthCheck(fail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if fail {
			a.logger().Info("drainhttp: admin: health check failed", "remote", r.RemoteAddr)
			a.s.mgr.HealthCheckFail()
		} else {
			a.logger().Info("drainhttp: admin: health check ok", "remote", r.RemoteAddr)
			a.s.mgr.HealthCheckOK()
		}
		a.writeStatus(w, http.StatusOK)
	}
}

func (a *admin) writeStatus(w http.ResponseWriter, code int) {
	body, err := json.MarshalIndent(a.s.adminStatus(), "", "  ")
	if err != nil { // cannot happen: AdminStatus has only plain fields
		http.Error(w, "drainhttp: admin: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

// adminStatus returns the server's AdminStatus. The server must be
// initialised.
func (s *Server) adminStatus() AdminStatus {
	ms := s.mgr.Status()
	now := s.tracker.clock.Now()
	st := AdminStatus{
		State:             s.drainState(ms),
		Ready:             s.Ready(),
		HealthCheckFailed: ms.HealthCheckFailed,
		Strategy:          ms.Strategy.String(),
		DrainTime:         s.mgr.opts.DrainTime.String(),
		DrainTimeout:      s.tracker.drainTimeout.String(),
		ShutdownDelay:     s.ShutdownDelay.String(),
		Progress:          ms.Progress,
		Now:               now,
		Connections:       s.tracker.stats(),
	}
	if ms.Draining {
		start, deadline := ms.Start, ms.Deadline
		left := max(deadline.Sub(now), 0).Seconds()
		st.Started, st.Deadline, st.TimeLeftSeconds = &start, &deadline, &left
	}
	s.mu.Lock()
	st.Listeners = len(s.listeners)
	s.mu.Unlock()
	return st
}

// drainState is AdminStatus.State, given the Manager's status.
func (s *Server) drainState(ms DrainStatus) string {
	select {
	case <-s.drained:
		return "drained"
	default:
	}
	started := s.drainStarted.Load()
	switch {
	case started && ms.Complete:
		return "closing"
	case ms.Draining:
		return "draining"
	case started && s.ShutdownDelay > 0:
		return "shutdown_delay"
	case started:
		return "draining" // the window is being started
	case s.isClosed():
		return "closed"
	default:
		return "serving"
	}
}
