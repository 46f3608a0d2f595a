package restart

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/cloudflare/tableflip"
)

// Restarter hands a process's listening sockets to a new copy of its binary
// and drains the old one: a zero-downtime binary upgrade or configuration
// reload on SIGHUP, Envoy's hot restart. It also takes listeners from
// systemd socket activation (LISTEN_FDS), so that the process can run under
// a .socket unit; those are handed over on upgrade like the others.
//
// The zero value is not usable: make one with New, one per process
// (tableflip's limit), before any listener. A Restarter is safe for
// concurrent use. It is not supported on Windows.
//
//	r, err := restart.New(restart.Options{PIDFile: pidFile})
//	ln, err := r.Listen("tcp", ":8080")
//	s := &drainhttp.Server{Handler: h, DrainTime: 30 * time.Second}
//	err = r.ServeUntilSignal(s, func() error { return s.Serve(ln) })
//
// Everything that can fail must be done before the listeners are served:
// once the new process reports ready, the old one stops accepting and
// cannot take its listeners back. A new process that crashes, hangs or
// fails to serve before that costs nothing: the old one kills it if need
// be, logs why and goes on serving. Arguments, working directory and
// environment are the first process's: a changed flag needs a full restart.
type Restarter struct {
	opts Options // normalized
	log  *slog.Logger
	env  env
	upg  upgrader

	ctx    context.Context // ends at Stop
	cancel context.CancelFunc

	mu        sync.Mutex
	activated []net.Listener // from systemd, not yet claimed by Listen
	listeners []*listener    // returned by Listen: closed at the handoff
	state     state
	upgrades  sync.WaitGroup // Upgrade calls in stateUpgrading
	handedOff chan struct{}  // closed when an upgrade succeeded
	serving   servingState

	readyOnce sync.Once
	readyErr  error
	ready     atomic.Bool // Ready succeeded

	parentOnce sync.Once
	parentGone chan struct{} // closed when the parent process has exited
}

// state is where a Restarter is in its life.
type state uint8

const (
	// stateServing: no upgrade is running. It goes to stateUpgrading
	// (Upgrade) or stateStopped (Stop).
	stateServing state = iota
	// stateUpgrading: Upgrade runs, or waits for the previous process to
	// exit. It goes back to stateServing when the upgrade fails, to
	// stateHandedOff when it succeeds, or to stateStopped (Stop).
	stateUpgrading
	// stateHandedOff: an upgrade succeeded; the new process serves. This
	// is a terminal state.
	stateHandedOff
	// stateStopped: Stop was called. This is a terminal state.
	stateStopped
)

// New validates opts and sets up the hot restart: if this process was
// started by an upgrade, it receives the listeners of its parent; if
// systemd started it with socket activation, it takes systemd's sockets
// (and removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the
// environment). A negative duration is an error wrapping
// drainhttp.ErrInvalidOption; a second Restarter in the same process, or
// Windows, one wrapping ErrUnavailable. It installs no signal handler.
func New(opts Options) (*Restarter, error) {
	return newRestarter(opts, stdEnv)
}

func newRestarter(opts Options, env env) (*Restarter, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	upg, err := env.newUpgrader(tableflip.Options{UpgradeTimeout: opts.UpgradeTimeout, PIDFile: opts.PIDFile})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	r := &Restarter{
		opts:       opts,
		log:        opts.Logger,
		env:        env,
		upg:        upg,
		handedOff:  make(chan struct{}),
		parentGone: make(chan struct{}),
	}
	r.serving.init()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.activated = activatedListeners(env.activationFiles(), r.log)
	return r, nil
}

// HasParent reports whether this process was started by an upgrade: its
// parent is still serving, or draining if this process has reported ready.
func (r *Restarter) HasParent() bool { return r.upg.HasParent() }

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
	upgrading = r.state == stateUpgrading
	if r.state != stateHandedOff {
		r.state = stateStopped
	}
	r.mu.Unlock()
	r.cancel()
	return upgrading
}
