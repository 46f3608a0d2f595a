package restart

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/drainhttp/drainhttp"
)

// DefaultUpgradeTimeout is how long the parent waits for the child to report
// ready before it kills the child and goes on serving: tableflip's default.
const DefaultUpgradeTimeout = time.Minute

// DefaultParentShutdownTime is how long, at most, the parent drains after a
// hot restart before it closes its remaining connections and exits.
//
// Envoy's --parent-shutdown-time-s defaults to 900 s, to cover its 600 s
// --drain-time-s for edge proxies holding long-lived client connections. Go
// services behind a load balancer drain for 30 to 90 s, and each connection
// is bounded anyway by its DrainTimeout deadline; two minutes covers a 90 s
// window plus the 5 s default DrainTimeout with room to spare, and keeps
// short the time during which two generations run and a further upgrade
// must wait (see Restarter.Upgrade).
const DefaultParentShutdownTime = 2 * time.Minute

var (
	// ErrUnavailable is returned by New when hot restart cannot work here:
	// on Windows (wrapping tableflip.ErrNotSupported), or when the process
	// already has a Restarter (tableflip allows one per process).
	ErrUnavailable = errors.New("drainhttp/restart: hot restart unavailable")
	// ErrListen wraps the error of a Restarter.Listen that could neither
	// inherit nor create its listener; the net package's error is wrapped
	// too, so errors.Is(err, syscall.EADDRINUSE) works.
	ErrListen = errors.New("drainhttp/restart: listen failed")
	// ErrReadyFailed is returned by Restarter.Ready, and so by
	// ServeUntilSignal, when the PID file could not be written or the
	// parent could not be told.
	ErrReadyFailed = errors.New("drainhttp/restart: readiness report failed")
	// ErrNotServing is returned by Restarter.ServeUntilSignal when a
	// listener from Listen was still not being accepted on UpgradeTimeout
	// after the serve functions started: it did not report ready, so the
	// parent, if any, goes on serving. The error names the listeners.
	ErrNotServing = errors.New("drainhttp/restart: listeners not served")
	// ErrUpgradeFailed is returned by Restarter.Upgrade when the new process
	// could not be started, exited before it was ready, or was not ready
	// within UpgradeTimeout (it is then killed), or when this process has
	// not reported ready itself. The current process goes on serving.
	ErrUpgradeFailed = errors.New("drainhttp/restart: upgrade failed")
	// ErrUpgradeInProgress is returned by Restarter.Upgrade while another
	// upgrade is running or waiting for the previous process to exit.
	ErrUpgradeInProgress = errors.New("drainhttp/restart: upgrade already in progress")
	// ErrStopped is returned by Restarter.Upgrade after Stop, or once an
	// upgrade has succeeded: this process has handed its listeners over,
	// and the next upgrade is the new process's to make.
	ErrStopped = errors.New("drainhttp/restart: restarter stopped")
)

// Options configures a Restarter. The zero value is valid: no PID file,
// DefaultUpgradeTimeout, DefaultParentShutdownTime, no logs.
type Options struct {
	// PIDFile, if not empty, is written with the process's PID when it
	// reports ready (atomically, by rename), so that it names the process
	// that serves: give it to systemd as PIDFile= with
	// ExecReload=/bin/kill -HUP $MAINPID. A relative path is taken from the
	// working directory at start. Empty (the default) writes none.
	PIDFile string
	// UpgradeTimeout is how long the parent waits for the child to report
	// ready; then it kills the child (SIGKILL) and goes on serving. It also
	// bounds how long ServeUntilSignal waits for every listener from Listen
	// to be accepted on before it reports ready (see ServeUntilSignal): a
	// child waiting longer would be killed anyway. Zero means
	// DefaultUpgradeTimeout (1 min); negative is an error. Envoy has no
	// such timeout: a child that never finishes initializing just never
	// asks the parent to shut down.
	UpgradeTimeout time.Duration
	// ParentShutdownTime is the parent's deadline after a successful
	// upgrade: its drain (drainhttp.Server.DrainAfterHandoff) is cut short
	// then, every connection left is closed, and ServeUntilSignal returns.
	// It bounds in the same way the drain of a process started by an
	// upgrade that is told to stop before it is ready. It
	// should exceed DrainTime × (1 + DrainTimeJitter) + DrainTimeout, or the
	// drain may not complete by itself (ServeUntilSignal logs a warning).
	// Zero means DefaultParentShutdownTime (2 min); negative is an error.
	// Envoy: --parent-shutdown-time-s (default 900 s).
	ParentShutdownTime time.Duration
	// Logger receives the restart's logs: listeners (where each came
	// from), readiness, upgrades and their failures, the handoff. Nil means
	// no logs.
	Logger *slog.Logger
}

// normalize checks o and applies the defaults: the one place they are.
func (o Options) normalize() (Options, error) {
	switch {
	case o.UpgradeTimeout < 0:
		return o, fmt.Errorf("%w: restart.Options.UpgradeTimeout %v is negative", drainhttp.ErrInvalidOption, o.UpgradeTimeout)
	case o.ParentShutdownTime < 0:
		return o, fmt.Errorf("%w: restart.Options.ParentShutdownTime %v is negative", drainhttp.ErrInvalidOption, o.ParentShutdownTime)
	}
	if o.UpgradeTimeout == 0 {
		o.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if o.ParentShutdownTime == 0 {
		o.ParentShutdownTime = DefaultParentShutdownTime
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
