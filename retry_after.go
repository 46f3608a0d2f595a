package drainhttp

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// RetryAfter is kube-apiserver's "send Retry-After" shutdown mode: once a
// drain has run for part of its window, new requests are not served but
// answered with Status, a Retry-After header and Connection: close, so that
// clients retry them elsewhere at once rather than on a connection about to
// close. Requests to ExemptPaths (health checks, metrics) are served as
// usual. The zero value answers 503 with "Retry-After: 1" from the start of
// the drain.
type RetryAfter struct {
	// After is the elapsed fraction of the drain window from which
	// requests are answered with Status. Zero means from the start; it
	// must be in [0, 1].
	After float64
	// Status is the answer's status code. Zero means 503 Service
	// Unavailable (kube-apiserver uses 429); it must be a 4xx or 5xx.
	Status int
	// Delay is the Retry-After value, rounded up to whole seconds. Zero
	// means one second; negative is an error.
	Delay time.Duration
	// ExemptPaths are request paths served normally whatever the phase.
	ExemptPaths []string
}

func (ra *RetryAfter) validate() error {
	switch {
	case !(ra.After >= 0 && ra.After <= 1): // NaN too
		return fmt.Errorf("%w: RetryAfter.After %v is outside [0, 1]", ErrInvalidOption, ra.After)
	case ra.Status != 0 && (ra.Status < 400 || ra.Status > 599):
		return fmt.Errorf("%w: RetryAfter.Status %d is not a 4xx or 5xx", ErrInvalidOption, ra.Status)
	case ra.Delay < 0:
		return fmt.Errorf("%w: RetryAfter.Delay %v is negative", ErrInvalidOption, ra.Delay)
	}
	return nil
}

// retryAfter is a validated RetryAfter bound to a Manager.
type retryAfter struct {
	mgr    *Manager
	mux    *http.ServeMux // the server's Handler, if it is one
	after  float64
	status int
	value  string
	exempt map[string]bool
}

func newRetryAfter(ra *RetryAfter, mgr *Manager, h http.Handler) *retryAfter {
	r := &retryAfter{mgr: mgr, after: ra.After, status: ra.Status, exempt: make(map[string]bool)}
	r.mux, _ = h.(*http.ServeMux)
	if r.status == 0 {
		r.status = http.StatusServiceUnavailable
	}
	secs := max(int64((ra.Delay+time.Second-1)/time.Second), 1)
	r.value = strconv.FormatInt(secs, 10)
	for _, p := range ra.ExemptPaths {
		r.exempt[p] = true
	}
	return r
}

// reject answers r, a request on c, with the Retry-After response if the
// drain has reached the phase, and reports whether it did. Its connection
// is told to close like any other the drain decides on. Requests that the
// server's Handler, a ServeMux, routes to a ReadyHandler are exempt, as
// ExemptPaths are: a probe must see readiness, not a Retry-After. Before
// any drain it is one atomic load.
func (ra *retryAfter) reject(c *conn, w http.ResponseWriter, r *http.Request) bool {
	if !ra.mgr.Draining() || ra.exempt[r.URL.Path] || ra.mgr.windowProgress() < ra.after || ra.isReadiness(r) {
		return false
	}
	if c.tell(reasonDecision, true) {
		c.closeAfter(w, r)
	}
	w.Header().Set("Retry-After", ra.value)
	http.Error(w, "draining: retry elsewhere", ra.status)
	return true
}

// isReadiness reports whether the mux routes r to a ReadyHandler.
func (ra *retryAfter) isReadiness(r *http.Request) bool {
	if ra.mux == nil {
		return false
	}
	h, _ := ra.mux.Handler(r)
	_, ok := h.(*readyHandler)
	return ok
}
