package drainhttp

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// DefaultMaxConnectionAgeJitter spreads connection ages by ±10 %, as
// grpc-go does, so that connections opened together (after a deploy) do not
// all end together.
const DefaultMaxConnectionAgeJitter = 0.1

// MaxGoAwayChance is the largest GoAwayChance accepted: kube-apiserver's
// --goaway-chance limit. More would churn connections for little balance.
const MaxGoAwayChance = 0.02

// ConnPolicy ends connections in everyday operation, not only during a
// drain, to keep load balanced and connections fresh. Every policy ends a
// connection the way a drain does: Connection: close on HTTP/1.1, GOAWAY on
// HTTP/2, then a deadline. The zero value applies no policy.
//
// A Server applies its own ConnPolicy to every listener; WithPolicy
// overrides it for one listener.
type ConnPolicy struct {
	// MaxConnectionAge ends a connection once it is this old (plus or
	// minus MaxConnectionAgeJitter). Zero means no limit; negative is an
	// error. grpc-go: MaxConnectionAge; Envoy: max_connection_duration.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeJitter is the fraction by which each connection's
	// age limit is moved, uniformly at random, up or down. Zero means
	// DefaultMaxConnectionAgeJitter (±10 %); it must be in [0, 1).
	MaxConnectionAgeJitter float64
	// MaxConnectionAgeGrace is the deadline of a connection ended by
	// MaxConnectionAge: after it, the connection is closed whatever it is
	// doing. Zero means the server's DrainTimeout; negative is an error.
	// grpc-go: MaxConnectionAgeGrace.
	MaxConnectionAgeGrace time.Duration
	// MaxRequestsPerConnection ends a connection with the response to its
	// Nth request. Zero means no limit; negative is an error. Envoy:
	// max_requests_per_connection.
	MaxRequestsPerConnection int64
	// GoAwayChance is the probability that a request on an HTTP/2
	// connection ends its connection, so that long-lived clients spread
	// out over the replicas behind a load balancer. Zero means never; it
	// must be in [0, MaxGoAwayChance]. kube-apiserver: --goaway-chance.
	GoAwayChance float64
	// GoAwayChanceHTTP1 applies GoAwayChance to HTTP/1.1 connections too.
	GoAwayChanceHTTP1 bool
}

func (p ConnPolicy) validate() error {
	switch {
	case p.MaxConnectionAge < 0:
		return fmt.Errorf("%w: MaxConnectionAge %v is negative", ErrInvalidOption, p.MaxConnectionAge)
	case p.MaxConnectionAgeJitter < 0 || p.MaxConnectionAgeJitter >= 1:
		return fmt.Errorf("%w: MaxConnectionAgeJitter %v is outside [0, 1)", ErrInvalidOption, p.MaxConnectionAgeJitter)
	case p.MaxConnectionAgeGrace < 0:
		return fmt.Errorf("%w: MaxConnectionAgeGrace %v is negative", ErrInvalidOption, p.MaxConnectionAgeGrace)
	case p.MaxRequestsPerConnection < 0:
		return fmt.Errorf("%w: MaxRequestsPerConnection %d is negative", ErrInvalidOption, p.MaxRequestsPerConnection)
	case p.GoAwayChance < 0 || p.GoAwayChance > MaxGoAwayChance:
		return fmt.Errorf("%w: GoAwayChance %v is outside [0, %v]", ErrInvalidOption, p.GoAwayChance, MaxGoAwayChance)
	}
	return nil
}

// normalize fills in defaults; drainTimeout is the server's.
func (p ConnPolicy) normalize(drainTimeout time.Duration) ConnPolicy {
	if p.MaxConnectionAgeJitter == 0 {
		p.MaxConnectionAgeJitter = DefaultMaxConnectionAgeJitter
	}
	if p.MaxConnectionAgeGrace == 0 {
		p.MaxConnectionAgeGrace = drainTimeout
	}
	return p
}

// age returns a connection's age limit for a random number u in [0, 1).
func (p *ConnPolicy) age(u float64) time.Duration {
	return time.Duration(float64(p.MaxConnectionAge) * (1 + p.MaxConnectionAgeJitter*(2*u-1)))
}

// WithPolicy returns l with its own ConnPolicy: a Server serving it applies
// p to the listener's connections instead of the server's own ConnPolicy.
// Envoy: per-listener connection limits.
func WithPolicy(l net.Listener, p ConnPolicy) net.Listener {
	return &policyListener{Listener: l, policy: p}
}

type policyListener struct {
	net.Listener
	policy ConnPolicy
}

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
	case ra.After < 0 || ra.After > 1:
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
	after  float64
	status int
	value  string
	exempt map[string]bool
}

func newRetryAfter(ra *RetryAfter, mgr *Manager) *retryAfter {
	r := &retryAfter{mgr: mgr, after: ra.After, status: ra.Status, exempt: make(map[string]bool)}
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

// reject answers r with the Retry-After response if the drain has reached
// the phase, and reports whether it did. Before any drain it is one atomic
// load.
func (ra *retryAfter) reject(w http.ResponseWriter, r *http.Request) bool {
	if !ra.mgr.Draining() || ra.exempt[r.URL.Path] || ra.mgr.windowProgress() < ra.after {
		return false
	}
	h := w.Header()
	h.Set("Retry-After", ra.value)
	setConnectionClose(w, r)
	http.Error(w, "draining: retry elsewhere", ra.status)
	return true
}
