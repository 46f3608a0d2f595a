package drainhttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/coreos/go-systemd/v22/activation"
)

// Hot restart: Envoy's parent shutdown sequence for a Go process.
//
// During an upgrade two processes run: the old one (the parent) and the new
// one (the child), which it started by re-executing its own binary with the
// same arguments. The listening sockets are shared, not re-bound: the child
// inherits their file descriptors (github.com/cloudflare/tableflip), so no
// connection is refused and no "address already in use" can happen. In
// order:
//
//  1. SIGHUP (or Restarter.Upgrade): the parent starts the child and keeps
//     serving.
//  2. The child gets its listeners (Restarter.Listen) and reports ready
//     (Restarter.Ready, which ServeUntilSignal calls before serving): it
//     writes the PID file and tells the parent.
//  3. The parent stops accepting on every listener it handed over: from now
//     on only the child accepts; connections waiting in the kernel's accept
//     queue are the child's too. The parent drains its existing connections
//     exactly as Drain does (Server.DrainAfterHandoff: the drain window, its
//     decisions and proactive drain, then each connection's DrainTimeout
//     deadline), and exits once no connection remains (no new one can come:
//     this may be before the end of the window), or when ParentShutdownTime
//     has passed at the latest, closing what is left.
//
// Envoy: the new process's hot restart, drainListeners in the parent, and
// startParentShutdownSequence's --parent-shutdown-time-s timer, which here
// the parent runs itself from the moment the child is ready. Envoy's parent
// always lives until that timer; ours leaves as soon as it has drained.

// DefaultUpgradeTimeout is how long the parent waits for the child to report
// ready before it kills the child and goes on serving: tableflip's default.
const DefaultUpgradeTimeout = time.Minute

// DefaultParentShutdownTime is how long, at most, the parent drains after a
// hot restart before it closes its remaining connections and exits.
//
// Envoy's --parent-shutdown-time-s defaults to 900 s, to cover its 600 s
// --drain-time-s for edge proxies holding long-lived client connections.
// Go services behind a load balancer drain for 30 to 90 s, and
// each connection is bounded anyway by its DrainTimeout deadline; two
// minutes covers a 90 s window plus the 5 s default DrainTimeout with room to
// spare, and keeps short the time during which two generations run and a
// further upgrade must wait (see Restarter.Upgrade).
const DefaultParentShutdownTime = 2 * time.Minute

var (
	// ErrRestartUnavailable is returned by NewRestarter when hot restart
	// cannot work here: on Windows (wrapping tableflip.ErrNotSupported), or
	// when the process already has a Restarter (tableflip allows one per
	// process).
	ErrRestartUnavailable = errors.New("drainhttp: hot restart unavailable")
	// ErrListen wraps the error of a Restarter.Listen that could neither
	// inherit nor create its listener; the net package's error is wrapped
	// too, so errors.Is(err, syscall.EADDRINUSE) works.
	ErrListen = errors.New("drainhttp: listen failed")
	// ErrReadyFailed is returned by Restarter.Ready when the PID file could
	// not be written or the parent could not be told.
	ErrReadyFailed = errors.New("drainhttp: readiness report failed")
	// ErrUpgradeFailed is returned by Restarter.Upgrade when the new process
	// could not be started, exited before it was ready, or was not ready
	// within UpgradeTimeout (it is then killed), or when this process has
	// not reported ready itself. The current process goes on serving.
	ErrUpgradeFailed = errors.New("drainhttp: upgrade failed")
	// ErrUpgradeInProgress is returned by Restarter.Upgrade while another
	// upgrade is running or waiting for the previous process to exit.
	ErrUpgradeInProgress = errors.New("drainhttp: upgrade already in progress")
	// ErrRestarterStopped is returned by Restarter.Upgrade after Stop, or
	// once an upgrade has succeeded: this process has handed its listeners
	// over, and the next upgrade is the new process's to make.
	ErrRestarterStopped = errors.New("drainhttp: restarter stopped")
)

// RestartOptions configures a Restarter. The zero value is valid: no PID
// file, DefaultUpgradeTimeout, DefaultParentShutdownTime, no logs.
type RestartOptions struct {
	// PIDFile, if not empty, is written with the process's PID when it
	// reports ready (atomically, by rename), so that it names the process
	// that serves: give it to systemd as PIDFile= with
	// ExecReload=/bin/kill -HUP $MAINPID. A relative path is taken from the
	// working directory at start. Empty (the default) writes none.
	PIDFile string
	// UpgradeTimeout is how long the parent waits for the child to report
	// ready; then it kills the child (SIGKILL) and goes on serving. Zero
	// means DefaultUpgradeTimeout (1 min); negative is an error. Envoy has
	// no such timeout: a child that never finishes initializing just never
	// asks the parent to shut down.
	UpgradeTimeout time.Duration
	// ParentShutdownTime is the parent's deadline after a successful
	// upgrade: its drain (Server.DrainAfterHandoff) is cut short then,
	// every connection left is closed, and ServeUntilSignal returns. It
	// should exceed DrainTime × (1 + DrainTimeJitter) + DrainTimeout, or the
	// drain never completes by itself (ServeUntilSignal logs a warning).
	// Zero means DefaultParentShutdownTime (2 min); negative is an error.
	// Envoy: --parent-shutdown-time-s (default 900 s).
	ParentShutdownTime time.Duration
	// Logger receives the restart's logs: listeners (where each came
	// from), readiness, upgrades and their failures, the handoff. Nil means
	// no logs.
	Logger *slog.Logger
}

func (o RestartOptions) normalize() (RestartOptions, error) {
	switch {
	case o.UpgradeTimeout < 0:
		return o, fmt.Errorf("%w: UpgradeTimeout %v is negative", ErrInvalidOption, o.UpgradeTimeout)
	case o.ParentShutdownTime < 0:
		return o, fmt.Errorf("%w: ParentShutdownTime %v is negative", ErrInvalidOption, o.ParentShutdownTime)
	}
	if o.UpgradeTimeout == 0 {
		o.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if o.ParentShutdownTime == 0 {
		o.ParentShutdownTime = DefaultParentShutdownTime
	}
	return o, nil
}

// Restarter hands a process's listening sockets to a new copy of its binary
// and drains the old one: a zero-downtime binary upgrade or configuration
// reload on SIGHUP, Envoy's hot restart. It also takes listeners from
// systemd socket activation (LISTEN_FDS), so that the process can run under
// a .socket unit; those are handed over on upgrade like the others.
//
// The zero value is not usable: make one with NewRestarter, one per process
// (tableflip's limit), before any listener. A Restarter is safe for
// concurrent use. It is not supported on Windows.
//
//	r, err := drainhttp.NewRestarter(drainhttp.RestartOptions{PIDFile: pidFile})
//	ln, err := r.Listen("tcp", ":8080")
//	s := &drainhttp.Server{Handler: h, DrainTime: 30 * time.Second}
//	err = r.ServeUntilSignal(s, func() error { return s.Serve(ln) })
//
// Everything that can fail must be done before ServeUntilSignal (or
// Ready): once the new process reports ready, the old one stops accepting
// and cannot take its listeners back. A new process that crashes or hangs
// before that costs nothing: the old one kills it if need be, logs why and
// goes on serving. Arguments, working directory and environment are the
// first process's: a changed flag needs a full restart.
type Restarter struct {
	opts RestartOptions
	log  *slog.Logger
	env  restartEnv
	upg  upgrader

	ctx    context.Context // ends at Stop
	cancel context.CancelFunc

	mu        sync.Mutex
	activated []net.Listener // from systemd, not yet claimed by Listen
	listeners []net.Listener // returned by Listen: closed at the handoff
	state     restartState
	handedOff chan struct{} // closed when an upgrade succeeded

	readyOnce sync.Once
	readyErr  error
	ready     atomic.Bool // Ready succeeded

	parentOnce sync.Once
	parentGone chan struct{} // closed when the parent process has exited
}

type restartState uint8

const (
	restartServing   restartState = iota // no upgrade running
	restartUpgrading                     // Upgrade runs or waits for the parent
	restartHandedOff                     // an upgrade succeeded: terminal
	restartStopped                       // Stop was called: terminal
)

// upgrader is the part of tableflip.Upgrader a Restarter uses; tests fake
// it.
type upgrader interface {
	// inherited returns the listener the parent passed for network and
	// addr, or nil.
	inherited(network, addr string) (net.Listener, error)
	// add registers ln to be passed to the next process under network and
	// addr.
	add(network, addr string, ln net.Listener) error
	Ready() error
	Upgrade() error
	Stop()
	WaitForParent(ctx context.Context) error
	HasParent() bool
}

// restartEnv is the Restarter's access to the operating system, injected by
// tests like tableflip's env.
type restartEnv struct {
	newUpgrader     func(tableflip.Options) (upgrader, error)
	activationFiles func() []*os.File // systemd's LISTEN_FDS; consumes them
	listen          func(network, addr string) (net.Listener, error)
	notify          func(chan<- os.Signal, ...os.Signal)
	stopNotify      func(chan<- os.Signal)
}

func stdRestartEnv() restartEnv {
	return restartEnv{
		newUpgrader: func(o tableflip.Options) (upgrader, error) {
			u, err := tableflip.New(o)
			if err != nil {
				return nil, err
			}
			return tableflipUpgrader{u}, nil
		},
		// Unset LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, so that the
		// next process does not see them: its sockets come from us.
		activationFiles: func() []*os.File { return activation.Files(true) },
		listen:          func(network, addr string) (net.Listener, error) { return net.Listen(network, addr) },
		notify:          signal.Notify,
		stopNotify:      signal.Stop,
	}
}

type tableflipUpgrader struct{ *tableflip.Upgrader }

func (u tableflipUpgrader) inherited(network, addr string) (net.Listener, error) {
	return u.Fds.Listener(network, addr)
}

func (u tableflipUpgrader) add(network, addr string, ln net.Listener) error {
	tl, ok := ln.(tableflip.Listener)
	if !ok {
		return fmt.Errorf("a %T has no file descriptor to pass on", ln)
	}
	return u.Fds.AddListener(network, addr, tl)
}

// NewRestarter validates opts and sets up the hot restart: if this process
// was started by an upgrade, it receives the listeners of its parent; if
// systemd started it with socket activation, it takes systemd's sockets
// (and removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the
// environment). A negative duration is an error wrapping ErrInvalidOption;
// a second Restarter in the same process, or Windows, one wrapping
// ErrRestartUnavailable. It installs no signal handler.
func NewRestarter(opts RestartOptions) (*Restarter, error) {
	return newRestarter(opts, stdRestartEnv())
}

func newRestarter(opts RestartOptions, env restartEnv) (*Restarter, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	upg, err := env.newUpgrader(tableflip.Options{UpgradeTimeout: opts.UpgradeTimeout, PIDFile: opts.PIDFile})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRestartUnavailable, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Restarter{
		opts:       opts,
		log:        log,
		env:        env,
		upg:        upg,
		handedOff:  make(chan struct{}),
		parentGone: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for _, f := range env.activationFiles() {
		ln, err := net.FileListener(f)
		if err != nil {
			r.log.Warn("drainhttp: systemd passed a file that is not a listening socket; ignored",
				"name", f.Name(), "err", err.Error())
		} else {
			r.activated = append(r.activated, ln)
		}
		f.Close() // FileListener made its own descriptor
	}
	return r, nil
}

// HasParent reports whether this process was started by an upgrade: its
// parent is still serving, or draining if this process has reported ready.
func (r *Restarter) HasParent() bool { return r.upg.HasParent() }

// activatedKey is the network under which a systemd socket is passed on to
// the next process: a key of its own, because tableflip removes the file of
// every Unix socket it knows as "unix" when it stops without upgrading, and
// a socket file that belongs to a .socket unit must outlive the service.
func activatedKey(network string) string { return "systemd:" + network }

// Listen returns a listener for network and addr ("tcp", "tcp4", "tcp6",
// "unix" or "unixpacket", as net.Listen), the first of:
//
//  1. the one the parent process passed, if this process was started by an
//     upgrade and its parent called Listen with the same network and addr
//     (the same strings: "127.0.0.1:8080" is not ":8080");
//  2. a socket from systemd socket activation bound to addr: a TCP socket
//     whose port is addr's and whose IP is addr's (an IP literal; an empty
//     host, "0.0.0.0" and "::" match any wildcard socket), or the Unix
//     socket at path addr;
//  3. a new one, from net.Listen.
//
// Each is passed on to the next process at the next upgrade, and closed in
// this one at the handoff: a listener not served by the Server given to
// ServeUntilSignal (an admin server's, say) stops accepting then too, and
// its Serve returns an error wrapping net.ErrClosed. Call Listen for every
// listener before Ready: the parent's listeners not asked for by then are
// closed, and so are systemd's (with a warning). An error wraps ErrListen.
func (r *Restarter) Listen(network, addr string) (net.Listener, error) {
	from := "parent"
	ln, err := r.upg.inherited(network, addr)
	if err == nil && ln == nil {
		// A systemd socket that the parent received and passed on.
		ln, err = r.upg.inherited(activatedKey(network), addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: inheriting %s %s: %w", ErrListen, network, addr, err)
	}
	if ln == nil {
		from = "systemd"
		if ln = r.claimActivated(network, addr); ln != nil {
			err = r.upg.add(activatedKey(network), addr, ln)
		} else {
			from = "new"
			if ln, err = r.env.listen(network, addr); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrListen, err)
			}
			err = r.upg.add(network, addr, ln)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("%w: %s %s cannot be handed over: %w", ErrListen, network, addr, err)
		}
	}
	r.mu.Lock()
	r.listeners = append(r.listeners, ln)
	r.mu.Unlock()
	r.log.Info("drainhttp: listening", "network", network, "addr", ln.Addr().String(), "from", from)
	return ln, nil
}

// claimActivated removes and returns the systemd socket bound to network
// and addr, or nil.
func (r *Restarter) claimActivated(network, addr string) net.Listener {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ln := range r.activated {
		if boundTo(ln.Addr(), network, addr) {
			r.activated = append(r.activated[:i], r.activated[i+1:]...)
			return ln
		}
	}
	return nil
}

// boundTo reports whether a listener's address a is what Listen(network,
// addr) asks for. Host names are not resolved: systemd binds IP literals.
func boundTo(a net.Addr, network, addr string) bool {
	switch network {
	case "unix", "unixpacket":
		return a.Network() == network && a.String() == addr
	case "tcp", "tcp4", "tcp6":
	default:
		return false
	}
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		if p, err = net.LookupPort(network, port); err != nil {
			return false
		}
	}
	if p != ta.Port {
		return false
	}
	if host == "" {
		return ta.IP.IsUnspecified()
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsUnspecified() {
		return ta.IP.IsUnspecified()
	}
	return ip.Equal(ta.IP)
}

// Ready reports that this process is ready to serve: it closes the
// listeners that the parent passed and Listen did not ask for, and the
// systemd sockets no Listen claimed (logging a warning for each), writes
// the PID file, and tells the parent, which then stops accepting and
// drains. ServeUntilSignal calls it before it starts serving; calling it
// again does nothing and returns the first call's result. An error wraps
// ErrReadyFailed: the parent, if any, then kills this process when its
// UpgradeTimeout expires, so return.
func (r *Restarter) Ready() error {
	r.readyOnce.Do(func() {
		r.mu.Lock()
		unclaimed := r.activated
		r.activated = nil
		r.mu.Unlock()
		for _, ln := range unclaimed {
			r.log.Warn("drainhttp: systemd socket not asked for by Listen; closed", "addr", ln.Addr().String())
			ln.Close()
		}
		if err := r.upg.Ready(); err != nil {
			r.readyErr = fmt.Errorf("%w: %w", ErrReadyFailed, err)
			return
		}
		r.ready.Store(true)
		r.log.Info("drainhttp: ready", "pid", os.Getpid(), "pid_file", r.opts.PIDFile, "has_parent", r.upg.HasParent())
	})
	return r.readyErr
}

// parentExited returns a channel closed when the parent process has exited
// (at once if there is none), and logs its exit.
func (r *Restarter) parentExited() <-chan struct{} {
	r.parentOnce.Do(func() {
		if !r.upg.HasParent() {
			close(r.parentGone)
			return
		}
		go func() {
			err := r.upg.WaitForParent(r.ctx)
			switch {
			case r.ctx.Err() != nil:
				return // stopped: parentGone stays open, nobody waits
			case err != nil:
				r.log.Warn("drainhttp: previous process exited uncleanly", "err", err.Error())
			default:
				r.log.Info("drainhttp: previous process exited")
			}
			close(r.parentGone)
		}()
	})
	return r.parentGone
}

// Upgrade starts a new process from the binary at the path this one was
// started with (so a replaced binary is the one that runs), with the same
// arguments, and hands it the listeners, Envoy's hot restart. It returns
// nil once the new process has reported ready: this process must then stop
// accepting and drain (ServeUntilSignal does, with DrainAfterHandoff).
//
// At most two generations run at once. If this process's own parent is
// still draining, Upgrade first waits for it to exit (at most that parent's
// ParentShutdownTime), or for ctx to end; it then starts the binary as it
// is at that moment. Meanwhile, and while the new process starts, another
// Upgrade returns ErrUpgradeInProgress. ctx does not interrupt a new process
// that has started; Stop does, killing it. Called while ServeUntilSignal
// runs (from an admin endpoint, say), a successful Upgrade makes it hand
// over as SIGHUP does.
//
// On failure (the new process could not start, exited, or was not ready
// within UpgradeTimeout and was killed) the error wraps ErrUpgradeFailed,
// this process goes on serving and may try again. After a successful
// upgrade or Stop, the error wraps ErrRestarterStopped.
func (r *Restarter) Upgrade(ctx context.Context) error {
	r.mu.Lock()
	switch r.state {
	case restartUpgrading:
		r.mu.Unlock()
		return ErrUpgradeInProgress
	case restartHandedOff, restartStopped:
		r.mu.Unlock()
		return ErrRestarterStopped
	}
	r.state = restartUpgrading
	r.mu.Unlock()

	err := r.upgrade(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.state == restartStopped:
		if err == nil {
			// Stop raced with a successful upgrade: the new process
			// serves, so this one must still hand over.
			close(r.handedOff)
		}
		return ErrRestarterStopped
	case err != nil:
		r.state = restartServing
		return err
	}
	r.state = restartHandedOff
	close(r.handedOff)
	return nil
}

// upgradeRetries and upgradeRetryDelay absorb two races in tableflip
// v1.2.3 (upgrader.go, run): Upgrade is refused with "process is not ready
// yet" or "parent hasn't exited" if it reaches tableflip's loop before the
// loop has seen that Ready was called or that the parent has exited, both
// of which we know have happened. 20 × 10 ms is ample for a goroutine to
// run.
const (
	upgradeRetries    = 20
	upgradeRetryDelay = 10 * time.Millisecond
)

// transientUpgradeError reports whether err is one of tableflip's refusals
// that a retry cures (see upgradeRetries). tableflip's errors are not
// exported, so their text is compared.
func transientUpgradeError(err error) bool {
	switch err.Error() {
	case "process is not ready yet", "parent hasn't exited":
		return true
	}
	return false
}

func (r *Restarter) upgrade(ctx context.Context) error {
	if !r.ready.Load() {
		return fmt.Errorf("%w: this process has not reported ready (call Ready first)", ErrUpgradeFailed)
	}
	select {
	case <-r.parentExited():
	default:
		r.log.Info("drainhttp: upgrade deferred until the previous process has exited")
		select {
		case <-r.parentExited():
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the previous process to exit: %w", ErrUpgradeFailed, ctx.Err())
		case <-r.ctx.Done():
			return ErrRestarterStopped
		}
	}
	r.log.Info("drainhttp: upgrading: starting a new process", "binary", os.Args[0], "upgrade_timeout", r.opts.UpgradeTimeout.String())
	for i := 0; ; i++ {
		err := r.upg.Upgrade()
		if err == nil {
			return nil
		}
		if r.ctx.Err() != nil {
			return ErrRestarterStopped
		}
		if i < upgradeRetries && transientUpgradeError(err) {
			t := time.NewTimer(upgradeRetryDelay)
			select {
			case <-t.C:
				continue
			case <-r.ctx.Done():
				t.Stop()
				return ErrRestarterStopped
			}
		}
		return fmt.Errorf("%w: %w", ErrUpgradeFailed, err)
	}
}

// Stop ends the Restarter: no upgrade starts any more, an upgrade in
// progress is interrupted and its new process killed, and the files of Unix
// sockets that Listen created are removed (systemd's are left alone). Call
// it when the process shuts down without an upgrade; ServeUntilSignal does.
// In a process started by an upgrade that has not reported ready (it is
// failing to start), Stop leaves the socket files alone: they are its
// parent's, which goes on serving on them.
func (r *Restarter) Stop() {
	r.stopUpgrades()
	if r.upg.HasParent() && !r.ready.Load() {
		// tableflip's Stop would unlink the inherited Unix sockets.
		return
	}
	r.upg.Stop()
}

// stopUpgrades is Stop without tableflip's part: no upgrade starts any
// more, and one waiting for the previous process gives up, but one whose
// new process is starting goes on, and no socket file is removed yet. It
// reports whether an upgrade was under way.
func (r *Restarter) stopUpgrades() (upgrading bool) {
	r.mu.Lock()
	upgrading = r.state == restartUpgrading
	if r.state != restartHandedOff {
		r.state = restartStopped
	}
	r.mu.Unlock()
	r.cancel()
	return upgrading
}

// closeListeners closes every listener Listen returned: the new process
// accepts on them now.
func (r *Restarter) closeListeners() {
	r.mu.Lock()
	ls := r.listeners
	r.mu.Unlock()
	for _, ln := range ls {
		ln.Close()
	}
}

// ServeUntilSignal is Server.ServeUntilSignal with hot restart: it reports
// ready (Ready), runs each serve function in its own goroutine (closures
// over s.Serve and s.ServeTLS on listeners from Listen), and then:
//
//   - SIGHUP upgrades (Upgrade). On success this process hands over: every
//     listener from Listen is closed, and s drains its connections with
//     DrainAfterHandoff under a ParentShutdownTime deadline; ServeUntilSignal
//     returns nil as soon as no connection is left (even before the drain
//     window ends: none can arrive any more), or at the deadline, having
//     closed what was left (logged at Warn). On failure it logs why and
//     goes on serving. A SIGHUP while an upgrade is under way (or waits for
//     the previous process to exit) is logged and ignored; once handed
//     over, SIGHUP is the new process's business.
//   - SIGTERM or SIGINT stops the Restarter (killing a new process still
//     starting) and runs Drain; it returns nil when the drain is complete.
//     A second SIGTERM or SIGINT, during either drain, makes it immediate
//     (DrainNow).
//
// A serve function failing first (say, a TLS certificate that does not
// load) makes it close s and return that error, and a drain started by
// other means (an admin endpoint) is waited for, as in
// Server.ServeUntilSignal. Errors wrapping net.ErrClosed from serve
// functions after a handoff are not errors. It returns nil so that main can
// exit 0.
//
// This is the only place the Restarter touches signals, and only when
// called; it subscribes to them before reporting ready, so that the PID
// file never names a process that SIGHUP would kill.
func (r *Restarter) ServeUntilSignal(s *Server, serve ...func() error) error {
	if err := s.init(); err != nil {
		return err
	}
	defer r.Stop()
	sigs := make(chan os.Signal, 4)
	r.env.notify(sigs, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt)
	defer r.env.stopNotify(sigs)
	if err := r.Ready(); err != nil {
		return err
	}
	r.parentExited() // logs the parent's exit

	errc := make(chan error, len(serve))
	for _, f := range serve {
		go func() { errc <- f() }()
	}
	remaining := len(serve)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	upgraded := make(chan error, 1)
	upgrading := false
	var err error
	handedOff := false
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if upgrading {
					r.log.Info("drainhttp: SIGHUP ignored: an upgrade is already under way")
					continue
				}
				r.log.Info("drainhttp: SIGHUP received, upgrading")
				upgrading = true
				go func() { upgraded <- r.Upgrade(ctx) }()
				continue
			}
			r.log.Info("drainhttp: signal received, draining", "signal", sig.String())
			if r.stopUpgrades() {
				// Kill the new process still starting. This also removes
				// the files of Unix sockets from Listen, which otherwise
				// waits for the end of the drain.
				r.upg.Stop()
			}
			// tableflip holds a duplicate of every listening socket: unless
			// it is closed when the drain closes the listeners, clients
			// that connect after that wait in its backlog until the process
			// exits, and are reset then.
			s.RegisterOnShutdown(r.Stop)
			stop := r.watchSignals(s, sigs)
			err = s.Drain(context.Background())
			stop()
			break loop
		case uerr := <-upgraded:
			upgrading = false
			switch {
			case uerr == nil:
				// The handoff follows through r.handedOff.
			case errors.Is(uerr, ErrUpgradeInProgress):
				r.log.Info("drainhttp: SIGHUP ignored: an upgrade is already under way")
			case errors.Is(uerr, ErrRestarterStopped):
			default:
				r.log.Warn("drainhttp: upgrade failed; still serving", "err", uerr.Error())
			}
		case <-r.handedOff:
			handedOff = true
			stop := r.watchSignals(s, sigs)
			err = r.handOff(s)
			stop()
			break loop
		case err = <-errc:
			remaining--
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
				r.Stop() // the listeners are closed: tableflip's copies too
				if s.drainStarted.Load() {
					<-s.drained
				}
			} else {
				s.Close()
			}
			break loop
		}
	}
	cancel()
	if upgrading {
		r.Stop() // let the upgrade return: the process is going away
		<-upgraded
	}
	for ; remaining > 0; remaining-- {
		e := <-errc
		if err != nil || errors.Is(e, http.ErrServerClosed) || (handedOff && errors.Is(e, net.ErrClosed)) {
			continue
		}
		err = e
	}
	return err
}

// watchSignals is Server.hurryOnSignal for a Restarter: SIGHUP, while this
// process drains, is logged and ignored.
func (r *Restarter) watchSignals(s *Server, sigs <-chan os.Signal) (wait func()) {
	return s.hurryOnSignal(sigs, r.log, func(sig os.Signal) bool {
		if sig != syscall.SIGHUP {
			return false
		}
		r.log.Info("drainhttp: SIGHUP ignored: this process is draining")
		return true
	})
}

// handOff is the parent's side once the new process is ready: stop
// accepting, drain, and give up at ParentShutdownTime.
func (r *Restarter) handOff(s *Server) error {
	// The server's listeners first, so that its Serve calls return
	// http.ErrServerClosed, then the others (an admin server's).
	s.closeListeners()
	r.closeListeners()
	limit := r.opts.ParentShutdownTime
	r.log.Info("drainhttp: new process ready; listeners handed over, draining", "parent_shutdown_time", limit.String())
	if need := drainBound(s); need > limit {
		r.log.Warn("drainhttp: ParentShutdownTime is shorter than the drain; it will be cut short",
			"parent_shutdown_time", limit.String(), "drain_bound", need.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	err := s.DrainAfterHandoff(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		st := s.Stats()
		r.log.Warn("drainhttp: parent shutdown time reached; remaining connections closed",
			"parent_shutdown_time", limit.String(), "forced", st.Forced)
		return nil
	}
	return err
}

// drainBound is how long s's drain after a handoff can last: the drain
// window with its jitter, then the last connections' deadline.
func drainBound(s *Server) time.Duration {
	o := s.mgr.opts
	return o.DrainTime + time.Duration(float64(o.DrainTime)*o.DrainTimeJitter) + s.tracker.drainTimeout
}
