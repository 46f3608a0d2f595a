package drainhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/time/rate"
)

// DefaultDrainTimeout is the default per-connection drain deadline: Envoy's
// drain_timeout default.
const DefaultDrainTimeout = 5 * time.Second

// Server is a drop-in replacement for http.Server that drains its
// connections instead of dropping them. Its fields up to HTTP2 are
// http.Server's, with the same meaning, and its serve, Shutdown, Close,
// RegisterOnShutdown and SetKeepAlivesEnabled methods keep http.Server's
// contracts. Drain, DrainNow and ServeUntilSignal add the graceful sequence.
//
// Every connection is tracked from Accept to Close, hijacked ones included.
// Every request passes through Middleware with the server's Manager as the
// decision. Every HTTP/2 connection (TLS via ALPN; h2c with prior knowledge
// when Protocols enables unencrypted HTTP/2) is served by its own HTTP/2
// server, so that it can be sent a GOAWAY while idle.
//
// The zero value is a valid configuration: an immediate drain (DrainTime
// zero) with DefaultDrainTimeout per connection. Options are validated when
// the server is first used; a bad one makes the serve methods return an error
// wrapping ErrInvalidOption. Fields must not be changed after that. A Server
// is safe for concurrent use, and like http.Server it may not be reused after
// Shutdown, Close or Drain.
type Server struct {
	// Addr, Handler, DisableGeneralOptionsHandler, TLSConfig, ReadTimeout,
	// ReadHeaderTimeout, WriteTimeout, IdleTimeout, MaxHeaderBytes,
	// ConnState, ErrorLog, BaseContext, ConnContext, HTTP2 and Protocols
	// are as in http.Server. ConnState and ConnContext are chained after the
	// server's own hooks, never replaced. http.Server's TLSNextProto is
	// absent: the server owns HTTP/2.
	Addr                         string
	Handler                      http.Handler
	DisableGeneralOptionsHandler bool
	TLSConfig                    *tls.Config
	ReadTimeout                  time.Duration
	ReadHeaderTimeout            time.Duration
	WriteTimeout                 time.Duration
	IdleTimeout                  time.Duration
	MaxHeaderBytes               int
	ConnState                    func(net.Conn, http.ConnState)
	ErrorLog                     *log.Logger
	BaseContext                  func(net.Listener) context.Context
	ConnContext                  func(ctx context.Context, c net.Conn) context.Context
	HTTP2                        *http.HTTP2Config
	Protocols                    *http.Protocols

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
	// Zero (the default) means no delay; negative is an error.
	// kube-apiserver: --shutdown-delay-duration.
	ShutdownDelay time.Duration
	// ConnPolicy ends connections in everyday operation (maximum age,
	// maximum requests, GoAway chance) through the same path as a drain.
	// The zero value applies none. WithPolicy overrides it per listener.
	ConnPolicy
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
	// final drain of every connection when the drain window ends. Zero
	// (the default) means no limit; negative is an error.
	ProactiveEndRate float64
	// Logger receives the server's drain logs: drain start and completion
	// at Info, forced closes at Warn, per-connection decisions at Debug.
	// Nil means no logs.
	Logger *slog.Logger

	clock  Clock          // tests inject one; nil is the real clock
	rand   func() float64 // tests inject one; nil is math/rand/v2
	notify func(chan<- os.Signal, ...os.Signal)

	initOnce sync.Once
	initErr  error
	srv      *http.Server
	mgr      *Manager
	tracker  *tracker
	log      *slog.Logger

	mu         sync.Mutex
	listeners  map[*trackingListener]struct{}
	closed     bool // listeners closed by Drain; Serve returns ErrServerClosed
	onShutdown []func()

	notReady     atomic.Bool
	handoff      atomic.Bool   // DrainAfterHandoff: the new process serves
	hurry        chan struct{} // closed by DrainNow
	hurryOnce    sync.Once
	drainOnce    sync.Once
	drainStarted atomic.Bool
	drained      chan struct{} // closed when the drain sequence has finished
}

func (s *Server) init() error {
	s.initOnce.Do(func() { s.initErr = s.build() })
	return s.initErr
}

func (s *Server) build() error {
	switch {
	case s.DrainTimeout < 0:
		return fmt.Errorf("%w: DrainTimeout %v is negative", ErrInvalidOption, s.DrainTimeout)
	case s.ShutdownDelay < 0:
		return fmt.Errorf("%w: ShutdownDelay %v is negative", ErrInvalidOption, s.ShutdownDelay)
	case s.ProactiveEndRate < 0:
		return fmt.Errorf("%w: ProactiveEndRate %v is negative", ErrInvalidOption, s.ProactiveEndRate)
	}
	if err := s.ConnPolicy.validate(); err != nil {
		return err
	}
	if s.RetryAfter != nil {
		if err := s.RetryAfter.validate(); err != nil {
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
	s.tracker = newTracker(mgr, mgr.opts.Clock, drainTimeout, s.log, s.ConnState)
	policy := s.ConnPolicy.normalize(drainTimeout)
	s.tracker.policy = &policy
	if s.ProactiveEndRate > 0 {
		// A burst of one spaces the ends evenly.
		s.tracker.limiter = rate.NewLimiter(rate.Limit(s.ProactiveEndRate), 1)
	}
	mw := &middleware{d: mgr}
	if s.RetryAfter != nil {
		mw.retry = newRetryAfter(s.RetryAfter, mgr)
	}
	s.listeners = make(map[*trackingListener]struct{})
	s.hurry = make(chan struct{})
	s.drained = make(chan struct{})

	mw.next = s.Handler
	if mw.next == nil {
		mw.next = http.DefaultServeMux
	}
	userConnContext := s.ConnContext
	s.srv = &http.Server{
		Addr:                         s.Addr,
		Handler:                      mw,
		DisableGeneralOptionsHandler: s.DisableGeneralOptionsHandler,
		TLSConfig:                    s.TLSConfig,
		ReadTimeout:                  s.ReadTimeout,
		ReadHeaderTimeout:            s.ReadHeaderTimeout,
		WriteTimeout:                 s.WriteTimeout,
		IdleTimeout:                  s.IdleTimeout,
		MaxHeaderBytes:               s.MaxHeaderBytes,
		ConnState:                    s.tracker.connState,
		ErrorLog:                     s.ErrorLog,
		BaseContext:                  s.BaseContext,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if userConnContext != nil {
				ctx = userConnContext(ctx, c)
			}
			return s.tracker.connContext(ctx, c)
		},
		HTTP2:     s.HTTP2,
		Protocols: s.Protocols,
	}
	installH2(s.srv, h2Config(s.HTTP2), func(key net.Conn, proto string, goaway func()) {
		if c := connOf(key); c != nil {
			p := H2
			if proto == "h2c" {
				p = H2C
			}
			c.setHTTP2(p, goaway)
		}
	})
	s.srv.RegisterOnShutdown(s.tracker.goAwayAll)
	return nil
}

// h2Config carries net/http's HTTP/2 settings over to x/net's server.
func h2Config(c *http.HTTP2Config) *http2.Server {
	conf := new(http2.Server)
	if c == nil {
		return conf
	}
	conf.MaxConcurrentStreams = uint32(max(c.MaxConcurrentStreams, 0))
	conf.MaxDecoderHeaderTableSize = uint32(max(c.MaxDecoderHeaderTableSize, 0))
	conf.MaxEncoderHeaderTableSize = uint32(max(c.MaxEncoderHeaderTableSize, 0))
	conf.MaxReadFrameSize = uint32(max(c.MaxReadFrameSize, 0))
	conf.MaxUploadBufferPerConnection = int32(max(c.MaxReceiveBufferPerConnection, 0))
	conf.MaxUploadBufferPerStream = int32(max(c.MaxReceiveBufferPerStream, 0))
	conf.ReadIdleTimeout = c.SendPingTimeout
	conf.PingTimeout = c.PingTimeout
	conf.WriteByteTimeout = c.WriteByteTimeout
	conf.PermitProhibitedCipherSuites = c.PermitProhibitedCipherSuites
	return conf
}

// Manager returns the server's drain manager: use it to fail the health
// check, register OnDrain callbacks, make per-listener children or follow
// the drain's progress. It returns nil if the options are invalid.
func (s *Server) Manager() *Manager {
	if s.init() != nil {
		return nil
	}
	return s.mgr
}

// Serve accepts connections on l and serves them, like http.Server.Serve.
// It returns http.ErrServerClosed after Shutdown, Close or Drain.
func (s *Server) Serve(l net.Listener) error {
	tl, err := s.track(l)
	if err != nil {
		return err
	}
	defer s.untrack(tl)
	return s.serveErr(s.srv.Serve(tl))
}

// ServeTLS is Serve over TLS, like http.Server.ServeTLS: certFile and
// keyFile may be empty if TLSConfig holds the certificates. HTTP/2 is
// offered with ALPN.
func (s *Server) ServeTLS(l net.Listener, certFile, keyFile string) error {
	tl, err := s.track(l)
	if err != nil {
		return err
	}
	defer s.untrack(tl)
	return s.serveErr(s.srv.ServeTLS(tl, certFile, keyFile))
}

// ListenAndServe listens on the TCP address Addr (":http" if empty) and
// serves, like http.Server.ListenAndServe.
func (s *Server) ListenAndServe() error {
	l, err := s.listen(":http")
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// ListenAndServeTLS listens on Addr (":https" if empty) and serves TLS,
// like http.Server.ListenAndServeTLS.
func (s *Server) ListenAndServeTLS(certFile, keyFile string) error {
	l, err := s.listen(":https")
	if err != nil {
		return err
	}
	return s.ServeTLS(l, certFile, keyFile)
}

func (s *Server) listen(defaultAddr string) (net.Listener, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, http.ErrServerClosed
	}
	addr := s.Addr
	if addr == "" {
		addr = defaultAddr
	}
	return net.Listen("tcp", addr)
}

func (s *Server) track(l net.Listener) (*trackingListener, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	tl := &trackingListener{Listener: l, t: s.tracker}
	if pl, ok := l.(*policyListener); ok {
		if err := pl.policy.validate(); err != nil {
			return nil, err
		}
		p := pl.policy.normalize(s.tracker.drainTimeout)
		tl.policy = &p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.Close()
		return nil, http.ErrServerClosed
	}
	s.listeners[tl] = struct{}{}
	return tl, nil
}

func (s *Server) untrack(tl *trackingListener) {
	s.mu.Lock()
	delete(s.listeners, tl)
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

// closeListeners stops accepting: every Serve returns http.ErrServerClosed.
func (s *Server) closeListeners() {
	s.mu.Lock()
	s.closed = true
	ls := make([]*trackingListener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// Shutdown is http.Server.Shutdown: it closes the listeners, closes idle
// connections, sends GOAWAY to HTTP/2 connections and waits for the others
// to finish, until ctx ends. Like http.Server's it neither waits for nor
// closes hijacked connections, and runs no drain window: use Drain for that.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	s.notReady.Store(true)
	s.closeListeners()
	return s.srv.Shutdown(ctx)
}

// Close is http.Server.Close, except that it also closes hijacked
// connections: every tracked connection is closed at once. A Drain in
// progress then returns promptly.
func (s *Server) Close() error {
	if err := s.init(); err != nil {
		return err
	}
	s.notReady.Store(true)
	s.hurryUp()
	s.closeListeners()
	err := s.srv.Close()
	s.tracker.closeAll("server closed")
	return err
}

// RegisterOnShutdown registers f to run, in its own goroutine, when
// Shutdown starts or when Drain closes the listeners, like
// http.Server.RegisterOnShutdown: use it to tell hijacked or long-lived
// connections to finish.
func (s *Server) RegisterOnShutdown(f func()) {
	if s.init() != nil {
		return
	}
	s.mu.Lock()
	s.onShutdown = append(s.onShutdown, f)
	s.mu.Unlock()
	s.srv.RegisterOnShutdown(f)
}

func (s *Server) runOnShutdown() {
	s.mu.Lock()
	fs := s.onShutdown
	s.mu.Unlock()
	for _, f := range fs {
		go f()
	}
}

// SetKeepAlivesEnabled is http.Server.SetKeepAlivesEnabled.
func (s *Server) SetKeepAlivesEnabled(v bool) {
	if s.init() == nil {
		s.srv.SetKeepAlivesEnabled(v)
	}
}
