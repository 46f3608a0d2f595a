package drainhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultDrainTimeout is the default per-connection drain deadline: Envoy's
// drain_timeout default.
const DefaultDrainTimeout = 5 * time.Second

// Server is a drop-in replacement for http.Server that drains its
// connections instead of dropping them. The zero value is a valid
// configuration: an immediate drain (DrainTime zero) with
// DefaultDrainTimeout per connection.
//
// Its fields up to DisableClientPriority are http.Server's, with the same
// names, types and meaning, and its Serve, ServeTLS, ListenAndServe,
// ListenAndServeTLS, Shutdown, Close, RegisterOnShutdown and
// SetKeepAlivesEnabled methods keep http.Server's contracts. net/http
// serves every connection itself, exactly as the listener returned it:
// ConnState, ConnContext, BaseContext and Hijack see the listener's own
// types (*net.TCPConn, *tls.Conn, ...), and r.TLS is set under ServeTLS
// and under Serve(tls.NewListener(...)) alike. drainhttp watches through
// those hooks, chaining the user's after its own.
//
// HTTP/2 is net/http's own. Where net/http would serve HTTP/2 (over TLS via
// ALPN; h2c with prior knowledge when Protocols enables unencrypted HTTP/2;
// not when GODEBUG=http2server=0, Protocols leaves it out, or TLSNextProto
// is non-nil), each HTTP/2 connection is served by an http.Server of its
// own, so that it can be sent a GOAWAY while idle. A TLSNextProto set by
// the user is used as given: HTTP/2 is then the user's, with no GOAWAY
// outside requests. The context key http.ServerContextKey holds an
// *http.Server with the server's settings (for an HTTP/2 connection, its
// own server's), not this Server.
//
// Drain, DrainNow and ServeUntilSignal add the graceful sequence (see
// Drain). Every option is validated when the server is first used (any
// method call); a bad one makes every method that can return an error
// return one wrapping ErrInvalidOption, and the others do nothing. Fields
// must not be changed after that: the serve methods report a change as an
// error naming the field. A Server is safe for concurrent use, and like
// http.Server it may not be reused after Shutdown, Close or Drain.
type Server struct {
	Addr                         string
	Handler                      http.Handler
	DisableGeneralOptionsHandler bool
	TLSConfig                    *tls.Config
	ReadTimeout                  time.Duration
	ReadHeaderTimeout            time.Duration
	WriteTimeout                 time.Duration
	IdleTimeout                  time.Duration
	MaxHeaderBytes               int
	// MaxHeaderValueCount is http.Server's since Go 1.27; before, it is
	// ignored.
	MaxHeaderValueCount int
	TLSNextProto        map[string]func(*http.Server, *tls.Conn, http.Handler)
	ConnState           func(net.Conn, http.ConnState)
	ErrorLog            *log.Logger
	BaseContext         func(net.Listener) context.Context
	ConnContext         func(ctx context.Context, c net.Conn) context.Context
	HTTP2               *http.HTTP2Config
	Protocols           *http.Protocols
	// DisableClientPriority is http.Server's since Go 1.27; before, it is
	// ignored.
	DisableClientPriority bool

	// DrainTime is the length of the drain window, during which the
	// server keeps accepting and serving while it tells connections to
	// close, as Strategy says. Zero means an immediate drain; negative is
	// an error. Envoy: --drain-time-s (default 600 s).
	DrainTime time.Duration
	// Strategy is Gradual (the default) or Immediate. Envoy:
	// --drain-strategy.
	Strategy Strategy
	// DrainTimeJitter stretches the drain window by a random fraction of
	// DrainTime in [0, DrainTimeJitter). Zero (the default) means none;
	// it must be in [0, 1]. Envoy: drain_timeout_jitter.
	DrainTimeJitter float64
	// DrainTimeout is each connection's hard deadline, counted from the
	// moment it is told to close: a connection still open then is closed,
	// whatever it is doing (a stuck handler, a slow client, an ignored
	// GOAWAY, a hijacked connection). Zero means DefaultDrainTimeout (5 s);
	// negative is an error. Envoy: the HTTP connection manager's
	// drain_timeout, which Envoy does not enforce on stuck streams
	// (envoy#34384); this one is enforced.
	DrainTimeout time.Duration
	// ShutdownDelay is how long Drain keeps serving normally, with
	// ReadyHandler failing, before the drain window starts, so that load
	// balancers and endpoint controllers stop sending new traffic first.
	// With Adaptive set it is the longest the delay lasts. Zero (the
	// default) means no delay; negative is an error. kube-apiserver:
	// --shutdown-delay-duration.
	ShutdownDelay time.Duration
	// Adaptive, if not nil, makes the shutdown delay and the drain window
	// end as soon as the server sees that the load balancer has let go and
	// the traffic is gone, instead of lasting their full length: see
	// AdaptiveShutdown. Nil (the default) keeps them fixed.
	Adaptive *AdaptiveShutdown
	// ConnPolicy ends connections in everyday operation (maximum age,
	// maximum requests, GoAway chance) through the same path as a drain.
	// The zero value applies none. WithPolicy overrides it per listener.
	ConnPolicy ConnPolicy
	// RetryAfter, if not nil, answers requests in the later part of a
	// drain with a status and Retry-After instead of serving them
	// (kube-apiserver's shutdown-send-retry-after). Nil (the default)
	// serves every request.
	RetryAfter *RetryAfter
	// ProactiveEndRate caps how many connections per second the server
	// ends on its own initiative (proactive drain, MaxConnectionAge,
	// GoAwayChance), so that their reconnects do not storm the rest of the
	// fleet. Connections over the limit are ended as soon as the limit
	// allows, never skipped. Requests told to close by the drain decision
	// and MaxRequestsPerConnection are not limited, and neither is the
	// drain of every connection when the drain window ends. Zero (the
	// default) means no limit; negative, NaN or infinite is an error.
	ProactiveEndRate float64
	// Logger receives the server's drain logs: drain start, its phases,
	// progress and completion at Info, forced closes at Warn,
	// per-connection decisions at Debug. Nil means no logs.
	Logger *slog.Logger

	clock  Clock          // tests inject one; nil is the real clock
	rand   func() float64 // tests inject one; nil is math/rand/v2
	notify func(chan<- os.Signal, ...os.Signal)

	initOnce sync.Once
	initErr  error
	config   configSnapshot
	srv      *http.Server // the outer server, which serves every connection
	mgr      *Manager
	tracker  *tracker
	log      *slog.Logger
	h2Once   sync.Once
	adaptive *adaptive // nil unless Adaptive is set
	phases   phases
	errLog   *errorLog // counts TLS handshake errors; summarizes them if ErrorLog is nil

	mu         sync.Mutex
	listeners  map[*servedListener]struct{}
	closed     bool // listeners closed: Serve returns ErrServerClosed
	onShutdown []func()

	onShutdownOnce sync.Once
	notReady       atomic.Bool
	handoff        atomic.Bool   // DrainAfterHandoff: another process serves now
	hurry          chan struct{} // closed by DrainNow
	hurryOnce      sync.Once
	drainOnce      sync.Once
	drainStarted   atomic.Bool
	cutShort       atomic.Bool   // the context of Drain ended first
	drained        chan struct{} // closed when the drain sequence has finished
	windowStarted  chan struct{} // closed when the drain window has started
	done           chan struct{} // closed when Drain, Shutdown or Close has finished
	doneOnce       sync.Once
}

// init validates and builds the server, once: every method calls it.
func (s *Server) init() error {
	s.initOnce.Do(func() {
		s.config = s.snapshotConfig()
		s.initErr = s.build()
	})
	return s.initErr
}

// check is init for the methods that start serving: a field changed
// since the first use is an error.
func (s *Server) check() error {
	if err := s.init(); err != nil {
		return err
	}
	if f := s.changedField(s.config); f != "" {
		return fmt.Errorf("%w: Server.%s was changed after the server was first used; set every field before calling any method", ErrInvalidOption, f)
	}
	return nil
}

func (s *Server) build() error {
	switch {
	case s.DrainTimeout < 0:
		return fmt.Errorf("%w: DrainTimeout %v is negative", ErrInvalidOption, s.DrainTimeout)
	case s.ShutdownDelay < 0:
		return fmt.Errorf("%w: ShutdownDelay %v is negative", ErrInvalidOption, s.ShutdownDelay)
	case !(s.ProactiveEndRate >= 0) || math.IsInf(s.ProactiveEndRate, 1):
		return fmt.Errorf("%w: ProactiveEndRate %v is not a finite number ≥ 0", ErrInvalidOption, s.ProactiveEndRate)
	}
	if err := s.ConnPolicy.validate(); err != nil {
		return err
	}
	if s.RetryAfter != nil {
		if err := s.RetryAfter.validate(); err != nil {
			return err
		}
	}
	if s.Adaptive != nil {
		if err := s.Adaptive.validate(); err != nil {
			return err
		}
	}
	mgr, err := NewManager(ManagerOptions{
		DrainTime:       s.DrainTime,
		Strategy:        s.Strategy,
		DrainTimeJitter: s.DrainTimeJitter,
		Clock:           s.clock,
		Rand:            s.rand,
	})
	if err != nil {
		return err
	}
	drainTimeout := s.DrainTimeout
	if drainTimeout == 0 {
		drainTimeout = DefaultDrainTimeout
	}
	s.log = s.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mgr = mgr
	s.tracker = newTracker(mgr, drainTimeout, s.log, s.ConnState)
	policy := s.ConnPolicy.normalize(drainTimeout)
	s.tracker.policy = &policy
	if s.ProactiveEndRate > 0 {
		// A burst of one spaces the ends evenly.
		s.tracker.limiter = rate.NewLimiter(rate.Limit(s.ProactiveEndRate), 1)
	}
	s.listeners = make(map[*servedListener]struct{})
	s.hurry = make(chan struct{})
	s.drained = make(chan struct{})
	s.windowStarted = make(chan struct{})
	s.done = make(chan struct{})
	s.phases.init(mgr.opts.Clock)
	s.phases.onEnter = func(pc PhaseChange) {
		s.log.Info("drainhttp: phase", "phase", pc.Phase.String(), "cause", pc.Cause)
	}
	if s.Adaptive != nil {
		s.adaptive = newAdaptive(s, s.Adaptive.normalize())
		s.tracker.countRequests = true
		s.tracker.onAccept = s.adaptive.accepted
		s.tracker.onClose = s.adaptive.closedConn
	}

	next := s.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	mw := &serverMiddleware{s: s, next: next}
	if s.RetryAfter != nil {
		mw.retry = newRetryAfter(s.RetryAfter, mgr, next)
	}
	s.srv = new(http.Server)
	s.copyToHTTPServer(s.srv)
	s.srv.Handler = mw
	s.srv.ConnState = s.tracker.connState
	userConnContext := s.ConnContext
	s.srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if userConnContext != nil {
			ctx = userConnContext(ctx, c)
		}
		return s.tracker.connContext(ctx, c)
	}
	userBaseContext := s.BaseContext
	s.srv.BaseContext = func(l net.Listener) context.Context {
		if sl, ok := l.(*servedListener); ok {
			l = sl.Listener
		}
		if userBaseContext == nil {
			return context.Background()
		}
		return userBaseContext(l)
	}
	if s.TLSNextProto != nil {
		s.srv.TLSNextProto = maps.Clone(s.TLSNextProto)
	}
	s.errLog = newErrorLog(s)
	s.srv.ErrorLog = s.errLog.logger()
	s.srv.RegisterOnShutdown(s.tracker.goAwayAll)
	s.srv.RegisterOnShutdown(s.runOnShutdown)
	return nil
}

// setupH2 decides, at the first serve call, whether net/http would serve
// HTTP/2, and if so routes HTTP/2 connections through servers of their
// own. net/http decides once too, at its first serve call.
// serve is the serve call to probe with, (*http.Server).Serve or
// serveTLSProbe: a program that never serves TLS links no TLS server code.
func (s *Server) setupH2(serve func(*http.Server, net.Listener) error) {
	s.h2Once.Do(func() {
		if s.TLSNextProto != nil || !netHTTPServesHTTP2(s, serve) {
			return
		}
		s.tracker.installH2(s.srv, s.Protocols != nil && s.Protocols.UnencryptedHTTP2())
	})
}

// netHTTPServesHTTP2 asks net/http whether an http.Server with s's
// settings would serve HTTP/2, on a throwaway server whose serve call
// returns at once: that is where net/http sets HTTP/2 up, or not
// (GODEBUG=http2server=0, Protocols, a TLSConfig without "h2" under Serve).
func netHTTPServesHTTP2(s *Server, serve func(*http.Server, net.Listener) error) bool {
	probe := &http.Server{Protocols: s.Protocols}
	if s.TLSConfig != nil {
		probe.TLSConfig = s.TLSConfig.Clone()
	}
	serve(probe, probeListener{})
	_, ok := probe.TLSNextProto["h2"]
	return ok
}

// serveTLSProbe is ServeTLS's probe: TLSConfig holds any certificates.
func serveTLSProbe(probe *http.Server, l net.Listener) error {
	return probe.ServeTLS(l, "", "")
}

// probeListener is a listener that is closed already.
type probeListener struct{}

func (probeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (probeListener) Close() error              { return nil }
func (probeListener) Addr() net.Addr            { return &net.TCPAddr{} }

// Manager returns the server's drain manager: use it to fail the health
// check, register OnDrain callbacks, make per-listener children or follow
// the drain's progress. Its error, wrapping ErrInvalidOption, says which
// option is invalid.
func (s *Server) Manager() (*Manager, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	return s.mgr, nil
}

// Serve accepts connections on l and serves them, like http.Server.Serve.
// It returns http.ErrServerClosed after Shutdown, Close or Drain.
func (s *Server) Serve(l net.Listener) error {
	sl, err := s.track(l)
	if err != nil {
		return err
	}
	defer s.untrack(sl)
	s.setupH2((*http.Server).Serve)
	return s.serveErr(s.srv.Serve(sl))
}

// ServeTLS is Serve over TLS, like http.Server.ServeTLS: certFile and
// keyFile may be empty if TLSConfig holds the certificates. HTTP/2 is
// offered with ALPN.
func (s *Server) ServeTLS(l net.Listener, certFile, keyFile string) error {
	sl, err := s.track(l)
	if err != nil {
		return err
	}
	defer s.untrack(sl)
	s.setupH2(serveTLSProbe)
	return s.serveErr(s.srv.ServeTLS(sl, certFile, keyFile))
}

// ListenAndServe listens on the TCP address Addr (":http" if empty) and
// serves, like http.Server.ListenAndServe. It listens with TCP, not
// Multipath TCP (which net.Listen uses on Linux since Go 1.24), so that the
// drain can filter the socket when it closes it (see Drain); a client that
// offers MPTCP falls back to TCP, as it does with any TCP server.
func (s *Server) ListenAndServe() error {
	l, err := s.listen(":http")
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// ListenAndServeTLS listens on Addr (":https" if empty) and serves TLS,
// like http.Server.ListenAndServeTLS, with TCP like ListenAndServe.
func (s *Server) ListenAndServeTLS(certFile, keyFile string) error {
	l, err := s.listen(":https")
	if err != nil {
		return err
	}
	return s.ServeTLS(l, certFile, keyFile)
}

func (s *Server) listen(defaultAddr string) (net.Listener, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, http.ErrServerClosed
	}
	addr := s.Addr
	if addr == "" {
		addr = defaultAddr
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

// track registers l, with the policy and sharing its wrappers say: the
// outermost WithPolicy, and any SharedListener, found through this
// package's wrappers and any that embeds its net.Listener (a
// *tls.Listener's, say).
func (s *Server) track(l net.Listener) (*servedListener, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	sl := &servedListener{Listener: l, t: s.tracker}
	for inner, depth := l, 0; inner != nil && depth < 8; depth++ {
		switch v := inner.(type) {
		case *policyListener:
			if sl.policy == nil {
				if err := v.policy.validate(); err != nil {
					return nil, err
				}
				p := v.policy.normalize(s.tracker.drainTimeout)
				sl.policy = &p
			}
			inner = v.Listener
		case *sharedListener:
			sl.shared = true
			inner = v.Listener
		default:
			inner = embeddedListener(inner)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.Close()
		return nil, http.ErrServerClosed
	}
	s.listeners[sl] = struct{}{}
	return sl, nil
}

func (s *Server) untrack(sl *servedListener) {
	s.mu.Lock()
	delete(s.listeners, sl)
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serveErr maps the error of a listener that Drain closed to
// http.ErrServerClosed.
func (s *Server) serveErr(err error) error {
	if errors.Is(err, net.ErrClosed) && s.isClosed() {
		return http.ErrServerClosed
	}
	return err
}

// takeListeners marks the server closed to new Serve calls and returns
// the listeners it serves on.
func (s *Server) takeListeners() []*servedListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	ls := make([]*servedListener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	return ls
}

// closeListeners stops accepting at once: every Serve returns
// http.ErrServerClosed.
func (s *Server) closeListeners() {
	for _, l := range s.takeListeners() {
		l.Close()
	}
}

// closeListenersGracefully closes every listener without resetting the
// connections waiting in their accept queues (see servedListener's
// closeGracefully), all at once, and returns when they are closed or ctx
// ends (closing what is left then).
func (s *Server) closeListenersGracefully(ctx context.Context) {
	ls := s.takeListeners()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Go(func() { l.closeGracefully(s.tracker.clock) })
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		for _, l := range ls {
			l.Close()
		}
		<-done
	}
}

// Shutdown is http.Server.Shutdown: it closes the listeners (without
// resetting the connections in their accept queues, where it can: see
// Drain), closes idle connections, sends GOAWAY to HTTP/2 connections and
// waits for the others to finish, until ctx ends. Like http.Server's it
// neither waits for nor closes hijacked connections, and runs no drain
// window: use Drain for that. The functions given to RegisterOnShutdown
// run once, here or in Drain, whichever comes first.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	defer s.finishUnlessDraining()
	s.notReady.Store(true)
	if !s.drainStarted.Load() {
		s.phases.enter(PhaseClosingListeners, "shutdown")
	}
	s.closeListenersGracefully(ctx)
	if !s.drainStarted.Load() {
		s.phases.enter(PhaseClosingConns, "listeners_closed")
	}
	err := s.srv.Shutdown(ctx)
	if !s.drainStarted.Load() {
		cause := "no_connection_left"
		if err != nil {
			cause = "canceled"
		}
		s.phases.enter(PhaseClosed, cause)
	}
	return err
}

// Close is http.Server.Close, except that it also closes hijacked
// connections: every tracked connection is closed at once. A Drain in
// progress then returns promptly.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	defer s.finishUnlessDraining()
	s.notReady.Store(true)
	s.hurryUp()
	s.closeListeners()
	err := s.srv.Close()
	s.tracker.closeAll("server closed")
	s.tracker.stopSweep()
	if !s.drainStarted.Load() {
		s.phases.enter(PhaseClosed, "close")
	}
	return err
}

// finish marks the server done: Done is closed.
func (s *Server) finish() {
	s.doneOnce.Do(func() {
		s.errLog.stop()
		close(s.done)
	})
}

// finishUnlessDraining is finish for Shutdown and Close: a drain that runs
// finishes the server itself, when it returns.
func (s *Server) finishUnlessDraining() {
	if !s.drainStarted.Load() {
		s.finish()
	}
}

// Done returns a channel that is closed when the server has finished: a
// Drain (or DrainAfterHandoff) has returned, or, with no drain started, a
// Shutdown or Close has.
func (s *Server) Done() <-chan struct{} {
	if s.init() != nil {
		return closedChan
	}
	return s.done
}

// RegisterOnShutdown registers f to run, in its own goroutine, when
// Shutdown starts or when Drain closes the listeners, whichever is first,
// like http.Server.RegisterOnShutdown: use it to tell hijacked or
// long-lived connections to finish. Each function runs once.
func (s *Server) RegisterOnShutdown(f func()) {
	if s.init() != nil {
		return
	}
	s.mu.Lock()
	s.onShutdown = append(s.onShutdown, f)
	s.mu.Unlock()
}

// runOnShutdown runs the RegisterOnShutdown functions, once.
func (s *Server) runOnShutdown() {
	s.onShutdownOnce.Do(func() {
		s.mu.Lock()
		fs := s.onShutdown
		s.mu.Unlock()
		for _, f := range fs {
			go f()
		}
	})
}

// SetKeepAlivesEnabled is http.Server.SetKeepAlivesEnabled, for every
// connection, HTTP/2 ones included.
func (s *Server) SetKeepAlivesEnabled(v bool) {
	if s.init() != nil {
		return
	}
	s.srv.SetKeepAlivesEnabled(v)
	s.tracker.setKeepAlives(v)
}
