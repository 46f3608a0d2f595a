package drainhttp

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAdaptiveProbes is AdaptiveShutdown.Probes' default: 3, the
// failureThreshold that Kubernetes' readiness probes default to and the
// "fall" that HAProxy's health checks default to, each the number of
// failed checks after which the checker stops sending traffic.
const DefaultAdaptiveProbes = 3

// DefaultAdaptiveQuiet is AdaptiveShutdown.Quiet's default: 2 s. After a
// checker has marked the server down, its change still has to reach the
// data path (kube-proxy programs its rules at most once a second by
// default, load balancers push their configuration); two seconds without
// a new connection covers that with a margin, and is short enough that an
// idle server exits at once to a user.
const DefaultAdaptiveQuiet = 2 * time.Second

// probeLookback is how recently a probe source must have probed, when the
// drain starts, to be waited for: a minute covers every usual probe
// interval (Kubernetes 10 s, HAProxy 2 s, cloud load balancers up to 30 s)
// and forgets checkers that have gone away.
const probeLookback = time.Minute

// maxProbeSources bounds how many probe sources are remembered; the
// oldest is forgotten first.
const maxProbeSources = 64

// AdaptiveShutdown makes a Server's shutdown delay and drain window as
// long as they need to be, from what the server sees, instead of fixed
// guesses (kube-apiserver's --shutdown-delay-duration, Caddy's
// shutdown_delay, and ShutdownDelay alone, are fixed sleeps: too short and
// the load balancer still sends new connections when the listener closes,
// too long and every rollout waits for nothing).
//
// The shutdown delay (PhaseNotReady) ends as soon as both hold, and at the
// latest after ShutdownDelay:
//
//  1. ReadyHandler has answered 503 at least Probes times to every probe
//     source, a remote IP address that has requested it more than once
//     and did so during the delay or in the minute before the drain
//     started: every checker (kubelet, HAProxy, a cloud load balancer) has
//     seen the server fail as often as it needs to stop sending traffic.
//     A source that asked once (a person's curl) is no checker. With no
//     checker, nobody routes by the server's readiness, and this holds at
//     once.
//  2. No new connection other than a probe's has arrived for Quiet: the
//     change has reached the data path. A connection is a probe's if its
//     first request was answered by ReadyHandler (kubelet and HAProxy open
//     one per check); those never count as traffic.
//
// The drain window (PhaseWindow) then ends early, at the latest after
// DrainTime, once no connection other than a probe's is open and none has
// arrived, or closed, for Quiet (a client told to close reconnects within
// moments; a connection the server closed because its client had left it
// idle does not count): a server with no traffic left stops at once, and
// a busy one still drains gradually. So Ctrl-C on an idle development
// server exits after about Quiet.
//
// The zero value uses DefaultAdaptiveProbes and DefaultAdaptiveQuiet.
type AdaptiveShutdown struct {
	// Probes is how many failed readiness checks each probe source must
	// have seen. Zero means DefaultAdaptiveProbes; negative is an error.
	// Set it to the failure threshold of your load balancer's checks.
	Probes int
	// Quiet is how long no new connection must arrive. Zero means
	// DefaultAdaptiveQuiet; negative is an error.
	Quiet time.Duration
}

func (a *AdaptiveShutdown) validate() error {
	switch {
	case a.Probes < 0:
		return fmt.Errorf("%w: Adaptive.Probes %d is negative", ErrInvalidOption, a.Probes)
	case a.Quiet < 0:
		return fmt.Errorf("%w: Adaptive.Quiet %v is negative", ErrInvalidOption, a.Quiet)
	}
	return nil
}

func (a AdaptiveShutdown) normalize() AdaptiveShutdown {
	if a.Probes == 0 {
		a.Probes = DefaultAdaptiveProbes
	}
	if a.Quiet == 0 {
		a.Quiet = DefaultAdaptiveQuiet
	}
	return a
}

// adaptive is a Server's view of its probes and traffic.
type adaptive struct {
	s     *Server
	opts  AdaptiveShutdown
	clock Clock
	kick  chan struct{} // something changed: conditions to evaluate again

	probeConns atomic.Int64 // open connections whose first request was a probe

	mu          sync.Mutex
	sources     map[string]*probeSource
	drainStart  time.Time          // zero until the drain starts
	lastTraffic time.Time          // accept time of the newest connection not a probe's
	lastClose   time.Time          // when the last connection not a probe's closed
	pending     map[*conn]struct{} // connections whose first request has not ended: maybe probes
}

type probeSource struct {
	lastSeen time.Time
	seen     int // probes from it
	failed   int // 503 answers since the drain started
}

func newAdaptive(s *Server, opts AdaptiveShutdown) *adaptive {
	return &adaptive{s: s, opts: opts, clock: s.mgr.opts.Clock, kick: make(chan struct{}, 1),
		sources: make(map[string]*probeSource), pending: make(map[*conn]struct{})}
}

func (a *adaptive) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// A new connection is traffic, from its arrival, unless its first request
// turns out to be a readiness probe: until that request has ended it is
// pending, and counted as traffic that arrived when it did.

// accepted is called for each new connection.
func (a *adaptive) accepted(c *conn) {
	a.mu.Lock()
	a.pending[c] = struct{}{}
	a.mu.Unlock()
	a.wake()
}

// classify records whether c, no longer pending, was traffic.
func (a *adaptive) classify(c *conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.pending[c]; !ok {
		return
	}
	delete(a.pending, c)
	if c.probe.Load() {
		a.probeConns.Add(1)
		return
	}
	if at := time.Unix(0, c.accepted); at.After(a.lastTraffic) {
		a.lastTraffic = at
	}
}

// closedConn is called when a connection goes away. A close is traffic's
// (lastClose), as a client told to close reconnects within moments, unless
// the server closed the connection for having been idle long past its
// client's rhythm: that client had stopped using it.
func (a *adaptive) closedConn(c *conn) {
	a.classify(c)
	if c.probe.Load() {
		a.probeConns.Add(-1)
	} else if !c.wasIdleClosed() {
		now := a.clock.Now()
		a.mu.Lock()
		a.lastClose = now
		a.mu.Unlock()
	}
	a.wake()
}

// firstRequestDone is called when c's first request has ended.
func (a *adaptive) firstRequestDone(c *conn) {
	a.classify(c)
	a.wake()
}

// quietAtLocked returns when the quiet period ends: Quiet after the newest
// traffic, pending connections included. a.mu is held.
func (a *adaptive) quietAtLocked() time.Time {
	last := a.lastTraffic
	for c := range a.pending {
		if at := time.Unix(0, c.accepted); at.After(last) {
			last = at
		}
	}
	return last.Add(a.opts.Quiet)
}

// probed records a readiness check from r, answered ready or not.
func (a *adaptive) probed(r *http.Request, ready bool) {
	if c := connFromContext(r.Context()); c != nil && c.requests.Load() == 1 {
		c.probe.Store(true)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	now := a.clock.Now()
	a.mu.Lock()
	src := a.sources[host]
	if src == nil {
		if len(a.sources) >= maxProbeSources {
			a.forgetOldestLocked()
		}
		src = &probeSource{}
		a.sources[host] = src
	}
	src.lastSeen = now
	src.seen++
	if !ready && !a.drainStart.IsZero() {
		src.failed++
	}
	a.mu.Unlock()
	a.wake()
}

func (a *adaptive) forgetOldestLocked() {
	var oldest string
	for k, v := range a.sources {
		if oldest == "" || v.lastSeen.Before(a.sources[oldest].lastSeen) {
			oldest = k
		}
	}
	delete(a.sources, oldest)
}

// released reports whether the load balancer has let go: every probe
// source has seen Probes failures, and there has been no new traffic for
// Quiet. If not, it returns when the quiet period will be over, or zero
// if it is (only a new probe can help then).
func (a *adaptive) released(now time.Time) (bool, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	probed := true
	for _, src := range a.sources {
		if src.seen > 1 && src.lastSeen.After(a.drainStart.Add(-probeLookback)) && src.failed < a.opts.Probes {
			probed = false
		}
	}
	if quietAt := a.quietAtLocked(); now.Before(quietAt) {
		return false, quietAt
	}
	return probed, time.Time{}
}

// start records that the drain has started, before readiness fails: every
// probe answered not ready from then on counts as a failure its checker
// saw.
func (a *adaptive) start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drainStart.IsZero() {
		a.drainStart = a.clock.Now()
	}
}

// waitRelease waits, at most maxDelay after start, until the load balancer
// has let go, or hurry is closed, and says which ended the wait.
func (a *adaptive) waitRelease(maxDelay time.Duration, hurry <-chan struct{}) string {
	a.start()
	a.mu.Lock()
	limit := a.drainStart.Add(maxDelay)
	a.mu.Unlock()
	for {
		now := a.clock.Now()
		ok, next := a.released(now)
		switch {
		case ok:
			return "released"
		case !now.Before(limit):
			return "max_delay"
		}
		if next.IsZero() || next.After(limit) {
			next = limit
		}
		if !a.sleep(next.Sub(now), hurry) {
			return "hurried"
		}
	}
}

// windowQuiet returns a channel closed once no connection other than a
// probe's is open and none has arrived for Quiet. The goroutine that
// watches stops then, or when stop is closed.
func (a *adaptive) windowQuiet(stop <-chan struct{}) <-chan struct{} {
	quiet := make(chan struct{})
	go func() {
		for {
			now := a.clock.Now()
			a.mu.Lock()
			// A client told to close reconnects within moments: the
			// window is quiet Quiet after the last connection closed too
			// (closedConn: one the server closed as idle does not count).
			quietAt := a.quietAtLocked()
			if q := a.lastClose.Add(a.opts.Quiet); q.After(quietAt) {
				quietAt = q
			}
			a.mu.Unlock()
			open := int64(a.s.tracker.openCount()) - a.probeConns.Load()
			if open <= 0 && !now.Before(quietAt) {
				close(quiet)
				return
			}
			// Until the quiet period is over, or something changes.
			wait := time.Hour
			if quietAt.After(now) {
				wait = quietAt.Sub(now)
			}
			if !a.sleep(wait, stop) {
				return
			}
		}
	}()
	return quiet
}

// sleep waits for d, a kick, or stop, and reports false for stop.
func (a *adaptive) sleep(d time.Duration, stop <-chan struct{}) bool {
	timer := make(chan struct{})
	t := a.clock.AfterFunc(d, func() { close(timer) })
	defer t.Stop()
	select {
	case <-timer:
	case <-a.kick:
	case <-stop:
		return false
	}
	return true
}
