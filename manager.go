package drainhttp

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Strategy says how the probability that DrainClose answers true evolves over
// a drain. It is Envoy's --drain-strategy.
type Strategy uint8

const (
	// Gradual, the default, raises the probability that DrainClose is true
	// continuously and linearly from 0 at the start of the drain to 1 at its
	// end (P = elapsed / DrainTime), and keeps it at 1 afterwards. Spreading
	// the closes spreads the reconnects, so that the peers taking over the
	// traffic are not hit by a storm. Envoy's "gradual" steps in whole
	// seconds; this one does not.
	Gradual Strategy = iota
	// Immediate makes DrainClose true from the first instant of the drain,
	// and fires every proactive drain callback at once. The drain still
	// lasts DrainTime: a server keeps accepting, and closing, connections
	// until load balancers have stopped sending them.
	Immediate
)

var strategyName = map[Strategy]string{
	Gradual:   "gradual",
	Immediate: "immediate",
}

// String returns "gradual" or "immediate".
func (s Strategy) String() string {
	if n, ok := strategyName[s]; ok {
		return n
	}
	return fmt.Sprintf("Strategy(%d)", uint8(s))
}

// ParseStrategy returns the strategy named "gradual" or "immediate", or an
// error wrapping ErrInvalidOption.
func ParseStrategy(name string) (Strategy, error) {
	for s, n := range strategyName {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown drain strategy %q (want gradual or immediate)", ErrInvalidOption, name)
}

// DefaultProactiveFraction is the part of the drain window over which
// proactive drain callbacks are spread: its first quarter, as in Envoy, so
// that idle connections are gone well before the window ends while their
// reconnects are still spread out.
const DefaultProactiveFraction = 0.25

// ManagerOptions configures a Manager. The zero value is valid: a gradual
// drain of zero length, which is immediate.
type ManagerOptions struct {
	// DrainTime is the length of a drain sequence: the time from
	// StartDrainSequence until every request is told to close and the
	// completion callbacks run. Zero means the drain is immediate and
	// completes at once; negative is an error. Envoy: --drain-time-s
	// (default 600 s; 30-90 s is common between services).
	DrainTime time.Duration
	// Strategy is Gradual (the default) or Immediate. Envoy:
	// --drain-strategy.
	Strategy Strategy
	// ProactiveFraction is the part of the drain window, from its start,
	// over which proactive drain callbacks (OnDrain) fire at uniformly
	// random times. Zero means DefaultProactiveFraction; otherwise it must
	// be in (0, 1]. Immediate drains fire every callback at once.
	ProactiveFraction float64
	// DrainTimeJitter stretches each drain sequence by a random fraction of
	// DrainTime drawn uniformly from [0, DrainTimeJitter), so that a fleet
	// told to drain at the same moment does not finish at the same moment.
	// Zero (the default) means no jitter; it must be in [0, 1]. Envoy:
	// drain_timeout_jitter; grpc-go jitters MaxConnectionAge by ±10 %.
	DrainTimeJitter float64
	// IgnoreHealthCheck makes the manager ignore health-check failure, its
	// own and its ancestors': it drains only when a drain sequence reaches
	// it. Envoy: a listener of drain type MODIFY_ONLY.
	IgnoreHealthCheck bool
	// Clock is the time source. Nil means the real clock. A child manager
	// with a nil Clock uses its parent's.
	Clock Clock
	// Rand returns pseudo-random numbers in [0, 1) for the gradual strategy,
	// the proactive schedule and the jitter. It must be safe for concurrent
	// use. Nil means math/rand/v2's Float64. A child manager with a nil Rand
	// uses its parent's.
	Rand func() float64
}

func (o ManagerOptions) normalize(parent *Manager) (ManagerOptions, error) {
	switch {
	case o.DrainTime < 0:
		return o, fmt.Errorf("%w: DrainTime %v is negative", ErrInvalidOption, o.DrainTime)
	case o.Strategy != Gradual && o.Strategy != Immediate:
		return o, fmt.Errorf("%w: unknown drain strategy %v", ErrInvalidOption, o.Strategy)
	case !(o.ProactiveFraction >= 0 && o.ProactiveFraction <= 1): // NaN too
		return o, fmt.Errorf("%w: ProactiveFraction %v is outside (0, 1]", ErrInvalidOption, o.ProactiveFraction)
	case !(o.DrainTimeJitter >= 0 && o.DrainTimeJitter <= 1):
		return o, fmt.Errorf("%w: DrainTimeJitter %v is outside [0, 1]", ErrInvalidOption, o.DrainTimeJitter)
	}
	if o.ProactiveFraction == 0 {
		o.ProactiveFraction = DefaultProactiveFraction
	}
	if o.Clock == nil {
		o.Clock = realClock{}
		if parent != nil {
			o.Clock = parent.opts.Clock
		}
	}
	if o.Rand == nil {
		o.Rand = defaultRand
		if parent != nil {
			o.Rand = parent.opts.Rand
		}
	}
	return o, nil
}

// Manager decides when connections should be drained, and tells them. It is
// a Decision that can be started: before StartDrainSequence its DrainClose is
// false (unless the health check is failed), during the drain it follows the
// Strategy, and after DrainTime it is true and the drain is complete.
//
// Managers form a tree (NewChild), for example one child per listener under a
// server-wide root: a child drains when it or any ancestor drains, while
// draining a child leaves its parent and siblings alone.
//
// A Manager is Envoy's Server::DrainManager. It is safe for concurrent use.
// Create one with NewManager; the zero value is not usable.
type Manager struct {
	opts   ManagerOptions
	parent *Manager

	seq      atomic.Pointer[sequence] // own drain sequence; nil until started
	hcFailed atomic.Bool
	// busy is true once a sequence has started here or while the health
	// check is failed: the request path's one load when nothing drains.
	busy atomic.Bool

	mu        sync.Mutex
	children  []*Manager
	effective *sequence // the sequence that reached this manager first
	timer     Timer     // completes the own sequence
	completed bool
	done      chan struct{}
	doneFns   []func()
	callbacks map[*callback]struct{}
	watchers  []func(*sequence)
}

// sequence is one drain: immutable once published.
type sequence struct {
	strategy     Strategy
	start        time.Time
	length       time.Duration // DrainTime plus jitter
	proactiveEnd time.Time     // callbacks fire in [start, proactiveEnd]
}

func (s *sequence) deadline() time.Time { return s.start.Add(s.length) }

// proactiveDelay returns a uniformly random delay within what is left at now
// of s's proactive window: zero once it is over.
func (s *sequence) proactiveDelay(now time.Time, rnd func() float64) time.Duration {
	if window := s.proactiveEnd.Sub(now); window > 0 {
		return time.Duration(rnd() * float64(window))
	}
	return 0
}

type callback struct {
	fn    func()
	timer Timer     // nil until scheduled
	at    time.Time // when timer fires
}

// NewManager returns a root manager configured by opts, or an error wrapping
// ErrInvalidOption if an option is out of range.
func NewManager(opts ManagerOptions) (*Manager, error) {
	return newManager(opts, nil)
}

// NewChild returns a manager under m (Envoy: a listener's drain manager
// under the server's). Its DrainClose is its own united with m's; draining m
// drains the child at once (its proactive callbacks follow m's schedule),
// while draining the child leaves m and the child's siblings alone. Options
// are the child's own, except that a nil Clock or Rand is m's.
func (m *Manager) NewChild(opts ManagerOptions) (*Manager, error) {
	c, err := newManager(opts, m)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.children = append(m.children, c)
	effective, completed := m.effective, m.completed
	m.mu.Unlock()
	if effective != nil {
		c.reach(effective)
	}
	if completed {
		c.complete()
	}
	return c, nil
}

func newManager(opts ManagerOptions, parent *Manager) (*Manager, error) {
	opts, err := opts.normalize(parent)
	if err != nil {
		return nil, err
	}
	return &Manager{
		opts:      opts,
		parent:    parent,
		done:      make(chan struct{}),
		callbacks: make(map[*callback]struct{}),
	}, nil
}

// DrainClose reports whether the connection of the current request should be
// closed now. Before any drain and while the health check passes it is one
// atomic load per manager in the chain, with no lock and no allocation.
// While a Gradual drain runs it is true with probability elapsed/DrainTime;
// it is true during an Immediate drain, after any drain's deadline and while
// the health check is failed (unless IgnoreHealthCheck).
func (m *Manager) DrainClose() bool {
	healthChecked := true
	for x := m; x != nil; x = x.parent {
		healthChecked = healthChecked && !x.opts.IgnoreHealthCheck
		if !x.busy.Load() {
			continue
		}
		if healthChecked && x.hcFailed.Load() {
			return true
		}
		if s := x.seq.Load(); s != nil && s.drainClose(x.opts.Clock.Now(), x.opts.Rand) {
			return true
		}
	}
	return false
}

// verdict is DrainClose as the Server's own middleware asks it, saying
// why: a drain (the connection gets a deadline) or the health check (it
// gets none).
type verdict uint8

const (
	keep verdict = iota
	closeForDrain
	closeForHealthCheck
)

// verdict returns DrainClose's answer and its cause in one pass, with the
// same one atomic load per manager in the chain while nothing drains. With perRequest false
// (an HTTP/2 connection, which a drain reaches per connection, not per
// request) a drain sequence is not asked.
func (m *Manager) verdict(perRequest bool) verdict {
	healthChecked, failed, draining := true, false, false
	for x := m; x != nil; x = x.parent {
		healthChecked = healthChecked && !x.opts.IgnoreHealthCheck
		if !x.busy.Load() {
			continue
		}
		if healthChecked && x.hcFailed.Load() {
			failed = true
		}
		if s := x.seq.Load(); s != nil {
			draining = true
			if perRequest && s.drainClose(x.opts.Clock.Now(), x.opts.Rand) {
				return closeForDrain
			}
		}
	}
	switch {
	case failed && draining && perRequest:
		return closeForDrain
	case failed && !draining:
		return closeForHealthCheck
	}
	return keep
}

func (s *sequence) drainClose(now time.Time, rnd func() float64) bool {
	if s.strategy == Immediate {
		return true
	}
	elapsed := now.Sub(s.start)
	if elapsed >= s.length {
		return true
	}
	return elapsed > 0 && rnd()*float64(s.length) < float64(elapsed)
}

// StartDrainSequence starts a drain of this manager (and so of its
// children) lasting DrainTime, and arranges for done, if not nil, to run once
// when it is complete. A call while a drain is already running does not
// restart the clock: its done runs at the same completion, or at once (in
// the calling goroutine) if the drain is already complete. Envoy:
// DrainManager::startDrainSequence.
//
// Completion is DrainTime (plus jitter) after the first call, or the
// completion of an ancestor's drain, whichever comes first. The done
// functions run one after another in the goroutine that completes the drain.
func (m *Manager) StartDrainSequence(done func()) {
	m.start(m.opts.Strategy, false, done)
}

// DrainNow is StartDrainSequence with the Immediate strategy, and it also
// cuts short a drain that is already running: from now on DrainClose is
// true, pending proactive callbacks fire at once and the drain completes
// now. It is what a second SIGTERM or an operator's "drain immediately"
// means.
func (m *Manager) DrainNow(done func()) {
	m.start(Immediate, true, done)
}

func (m *Manager) start(strategy Strategy, now bool, done func()) {
	m.mu.Lock()
	if m.completed {
		m.mu.Unlock()
		if done != nil {
			done()
		}
		return
	}
	if done != nil {
		m.doneFns = append(m.doneFns, done)
	}
	old := m.seq.Load()
	if old != nil && !now {
		m.mu.Unlock()
		return
	}
	t := m.opts.Clock.Now()
	s := &sequence{strategy: strategy, start: t, proactiveEnd: t}
	switch {
	case old != nil:
		s.start = old.start
		s.length = t.Sub(old.start)
	case !now:
		s.length = m.opts.DrainTime + time.Duration(m.opts.Rand()*m.opts.DrainTimeJitter*float64(m.opts.DrainTime))
		if strategy == Gradual {
			s.proactiveEnd = t.Add(time.Duration(m.opts.ProactiveFraction * float64(s.length)))
		}
	}
	m.seq.Store(s)
	m.busy.Store(true)
	if m.timer != nil {
		m.timer.Stop()
	}
	m.timer = m.opts.Clock.AfterFunc(s.deadline().Sub(t), m.complete)
	m.mu.Unlock()
	m.reach(s)
}

// reach schedules the proactive callbacks of m and its descendants for a
// drain sequence s that has just started at m or above it. A callback
// already due earlier keeps its time.
func (m *Manager) reach(s *sequence) {
	m.mu.Lock()
	if m.effective == nil || s.deadline().Before(m.effective.deadline()) {
		m.effective = s
	}
	for cb := range m.callbacks {
		m.schedule(cb, s)
	}
	children, watchers := m.children, m.watchers
	m.mu.Unlock()
	for _, w := range watchers {
		w(s)
	}
	for _, c := range children {
		c.reach(s)
	}
}

// watch makes fn learn of every drain sequence that reaches m (its own or an
// ancestor's), from now on: what OnDrain is for one callback, watch is for
// a whole population that schedules itself (the tracker's connections).
func (m *Manager) watch(fn func(*sequence)) {
	m.mu.Lock()
	m.watchers = append(m.watchers, fn)
	effective := m.effective
	m.mu.Unlock()
	if effective != nil {
		fn(effective)
	}
}

// schedule arms cb for sequence s at a uniformly random time in what is left
// of s's proactive window, unless it is already armed for an earlier time.
// m.mu is held.
func (m *Manager) schedule(cb *callback, s *sequence) {
	now := m.opts.Clock.Now()
	delay := s.proactiveDelay(now, m.opts.Rand)
	at := now.Add(delay)
	if cb.timer != nil {
		if !at.Before(cb.at) || !cb.timer.Stop() {
			return
		}
	}
	cb.at = at
	cb.timer = m.opts.Clock.AfterFunc(delay, func() { m.fire(cb) })
}

func (m *Manager) fire(cb *callback) {
	m.mu.Lock()
	_, pending := m.callbacks[cb]
	delete(m.callbacks, cb)
	m.mu.Unlock()
	if pending {
		cb.fn()
	}
}

// complete ends the drain of m and its descendants: Done is closed and the
// done functions run.
func (m *Manager) complete() {
	m.mu.Lock()
	if m.completed {
		m.mu.Unlock()
		return
	}
	m.completed = true
	if m.timer != nil {
		m.timer.Stop()
	}
	close(m.done)
	fns, children := m.doneFns, m.children
	m.doneFns = nil
	m.mu.Unlock()
	for _, c := range children {
		c.complete()
	}
	for _, fn := range fns {
		fn()
	}
}

// OnDrain registers fn to be called once when a drain reaches this manager,
// so that a connection that never sends another request is drained too.
// This is Envoy's proactive drain (DrainDecision::addOnDrainCloseCb).
//
// When a Gradual drain starts, the registered functions run at uniformly
// random times over the first ProactiveFraction of the window; when an
// Immediate one starts, at once. A function registered while a drain is
// running runs after a random delay within what remains of that part of the
// window, or at once. Each runs in its own goroutine. Waiting costs a timer,
// not a goroutine.
//
// The returned cancel function unregisters fn; it reports whether it did so
// before fn started, false meaning fn has run, is running, or was already
// cancelled. OnDrain panics if fn is nil.
func (m *Manager) OnDrain(fn func()) (cancel func() bool) {
	if fn == nil {
		panic("drainhttp: OnDrain with nil func")
	}
	cb := &callback{fn: fn}
	m.mu.Lock()
	m.callbacks[cb] = struct{}{}
	if m.effective != nil {
		m.schedule(cb, m.effective)
	}
	m.mu.Unlock()
	return func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.callbacks[cb]; !ok {
			return false
		}
		delete(m.callbacks, cb)
		if cb.timer != nil {
			cb.timer.Stop()
		}
		return true
	}
}

// Draining reports whether a drain sequence has reached this manager (its
// own or an ancestor's). It stays true after the drain completes.
func (m *Manager) Draining() bool {
	for x := m; x != nil; x = x.parent {
		if x.seq.Load() != nil {
			return true
		}
	}
	return false
}

// Done returns a channel that is closed when the drain of this manager is
// complete: DrainTime after it started, or when an ancestor's drain
// completes, whichever is first.
func (m *Manager) Done() <-chan struct{} { return m.done }

// HealthCheckFail makes DrainClose true and Ready false without starting a
// drain sequence, so that load balancers stop sending new traffic and
// connections close as their next request ends. It applies to this manager
// and to its descendants that do not set IgnoreHealthCheck. Envoy: POST
// /healthcheck/fail.
//
// On a Server, a connection that serves a request while the health check
// is failed is told to close (Connection: close, or a GOAWAY on HTTP/2;
// Draining(ctx) is closed) but given no deadline, unlike a drain: nothing
// of the failed state outlives HealthCheckOK. A drain that starts later
// gives it its deadline as it gives every connection.
func (m *Manager) HealthCheckFail() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hcFailed.Store(true)
	m.busy.Store(true)
}

// HealthCheckOK undoes HealthCheckFail: from now on requests are no longer
// told to close (unless a drain runs), and Ready follows the drain alone.
// Connections told to close while the check was failed still close, as
// their streams end, since a Connection: close or a GOAWAY cannot be taken
// back; none of them is cut at a deadline. It does not stop a drain
// sequence: a draining manager stays not Ready. Envoy: POST
// /healthcheck/ok.
func (m *Manager) HealthCheckOK() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hcFailed.Store(false)
	m.busy.Store(m.seq.Load() != nil)
}

// HealthCheckFailed reports whether the health check of this manager is
// failed, by itself or by an ancestor (ignoring both if IgnoreHealthCheck).
func (m *Manager) HealthCheckFailed() bool {
	for x := m; x != nil && !x.opts.IgnoreHealthCheck; x = x.parent {
		if x.hcFailed.Load() {
			return true
		}
	}
	return false
}

// Ready reports whether new traffic is welcome: no drain has reached the
// manager and its health check is not failed. Readiness probes and load
// balancer health checks should follow it.
func (m *Manager) Ready() bool { return !m.Draining() && !m.HealthCheckFailed() }

// DrainStatus is a snapshot of a manager's drain, for status pages.
type DrainStatus struct {
	// Draining is true once a drain sequence has reached the manager.
	Draining bool
	// Complete is true once that drain has completed (Done is closed).
	Complete bool
	// HealthCheckFailed is true while the health check is failed.
	HealthCheckFailed bool
	// Strategy is the strategy of the drain that governs the manager (of
	// those that reached it, the one with the earliest deadline), or the
	// configured one before any drain.
	Strategy Strategy
	// Start and Deadline bound the drain window; zero before any drain.
	Start, Deadline time.Time
	// Progress is the elapsed fraction of the window, from 0 to 1.
	Progress float64
}

// Status returns a snapshot of the manager's drain.
func (m *Manager) Status() DrainStatus {
	m.mu.Lock()
	s, completed := m.effective, m.completed
	m.mu.Unlock()
	st := DrainStatus{
		Draining:          s != nil,
		Complete:          completed,
		HealthCheckFailed: m.HealthCheckFailed(),
		Strategy:          m.opts.Strategy,
	}
	if s == nil {
		return st
	}
	st.Strategy, st.Start, st.Deadline = s.strategy, s.start, s.deadline()
	st.Progress = s.progress(m.opts.Clock.Now())
	if completed {
		st.Progress = 1
	}
	return st
}

func (s *sequence) progress(now time.Time) float64 {
	switch elapsed := now.Sub(s.start); {
	case elapsed >= s.length:
		return 1
	case elapsed > 0:
		return float64(elapsed) / float64(s.length)
	}
	return 0
}

// windowProgress is Progress without a lock, for the request path: the
// furthest progress of the drains that reached m.
func (m *Manager) windowProgress() float64 {
	now := m.opts.Clock.Now()
	var p float64
	for x := m; x != nil; x = x.parent {
		if s := x.seq.Load(); s != nil {
			p = max(p, s.progress(now))
		}
	}
	return p
}

// Progress returns the elapsed fraction of the drain window: 0 before the
// drain, 1 once it is complete.
func (m *Manager) Progress() float64 { return m.Status().Progress }
