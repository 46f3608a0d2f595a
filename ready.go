package drainhttp

import "net/http"

// ReadyHandler returns an http.Handler for readiness probes and load
// balancer health checks: 200 "ok" while the server takes new traffic, 503
// "draining" once Drain, Shutdown or Close started or while the Manager's
// health check is failed. Envoy: the health check filter answering 503
// after /healthcheck/fail. Mount it where probes reach it; on the serving
// mux it passes through the drain like any request, except RetryAfter,
// which never answers it. With Adaptive, its 503 answers are the probes
// the shutdown delay counts.
func (s *Server) ReadyHandler() http.Handler { return &readyHandler{s} }

type readyHandler struct{ s *Server }

func (h *readyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.init(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if s.handoff.Load() {
		// The new process serves this address now: a health checker
		// that reached the old one on a kept-alive connection must not
		// mark the address down, only move to the new process.
		w.Header().Set("Connection", "close")
		w.Write([]byte("ok\n"))
		return
	}
	ready := s.Ready()
	if s.adaptive != nil {
		s.adaptive.probed(r, ready)
	}
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

// Ready reports whether the server takes new traffic: see ReadyHandler.
func (s *Server) Ready() bool {
	return s.init() == nil && !s.notReady.Load() && s.mgr.Ready()
}
