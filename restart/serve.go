package restart

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/drainhttp/drainhttp"
)

// ServeUntilSignal is drainhttp.Server.ServeUntilSignal with hot restart:
// it runs each serve function in its own goroutine (closures over s.Serve
// and s.ServeTLS on listeners from Listen), reports ready (Ready) once
// every listener from Listen is being served (Serving), and then:
//
//   - SIGHUP upgrades (Upgrade). On success this process hands over: s
//     closes its listeners, every other listener from Listen is closed, and
//     s drains its connections with DrainAfterHandoff under a
//     ParentShutdownTime deadline; ServeUntilSignal returns nil as soon as
//     no connection is left (even before the drain window ends: none can
//     arrive any more), or at the deadline, having closed what was left
//     (logged at Warn). On failure it logs why and goes on serving. A SIGHUP
//     while an upgrade is under way (or waits for the previous process to
//     exit) is logged and ignored; once handed over, SIGHUP is the new
//     process's business.
//   - SIGTERM or SIGINT stops the Restarter (killing a new process still
//     starting) and runs Drain; it returns nil when the drain is complete.
//     A second SIGTERM or SIGINT, during either drain, makes it immediate
//     (Server.StartDrainNow, as Server.DrainNow does).
//
// Ready waits for the serving because once this process reports ready its
// parent stops accepting for good: a ServeTLS that fails on its certificate
// after that would leave nothing serving. If a serve function returns an
// error first, ServeUntilSignal closes s and returns that error without
// reporting ready, and the parent goes on serving. If a listener from
// Listen is still not accepted on UpgradeTimeout after the serve functions
// started (it was not passed to any; a parent would have killed this
// process by then), it closes s and returns an error wrapping
// ErrNotServing. Before it is ready, SIGHUP is ignored, and SIGTERM or
// SIGINT in a process started by an upgrade drains s without filtering the
// listeners, as after a handoff, since the parent goes on serving on them.
//
// A serve function failing after that (the process is ready) makes it
// close s and return that error. If s is drained, shut down or closed by
// other means (an admin endpoint calling Drain, another goroutine calling
// Shutdown), ServeUntilSignal waits until that has finished (Server.Done)
// and returns nil, as Server.ServeUntilSignal does.
//
// Before it returns, it closes every listener from Listen and waits for
// every serve function: those over other servers (an admin server's, which
// answers until s has drained) return then, and their errors wrapping
// net.ErrClosed are not errors, nor is http.ErrServerClosed. It returns nil
// so that main can exit 0.
//
// This is the only place the Restarter touches signals, and only when
// called; it subscribes to them before reporting ready, so that the PID
// file never names a process that SIGHUP would kill.
func (r *Restarter) ServeUntilSignal(s *drainhttp.Server, serve ...func() error) error {
	defer r.Stop()
	if _, err := s.Manager(); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	r.env.notify(sigs, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt)
	defer r.env.stopNotify(sigs)

	l := &serveLoop{r: r, s: s, sigs: sigs, errc: make(chan error, len(serve)),
		remaining: len(serve), upgraded: make(chan error, 1)}
	for _, f := range serve {
		go func() { l.errc <- f() }()
	}
	err := l.run()
	if l.upgrading {
		r.Stop() // let the upgrade return: the process is going away
		<-l.upgraded
	}
	// The process is going away: the serve functions over other servers
	// (an admin server's) return too.
	r.closeListeners()
	for ; l.remaining > 0; l.remaining-- {
		e := <-l.errc
		if err != nil || e == nil || errors.Is(e, http.ErrServerClosed) || errors.Is(e, net.ErrClosed) {
			continue
		}
		err = e
	}
	return err
}

// serveLoop is one ServeUntilSignal call's state, owned by its goroutine.
type serveLoop struct {
	r         *Restarter
	s         *drainhttp.Server
	sigs      chan os.Signal
	errc      chan error // the serve functions' results
	remaining int        // serve functions that have not returned
	upgraded  chan error // the result of the Upgrade that SIGHUP started
	upgrading bool       // that Upgrade runs
	ready     bool       // Ready succeeded
}

// run serves until the process must go, and returns what ServeUntilSignal
// returns unless a serve function that has not returned yet says worse.
func (l *serveLoop) run() error {
	r := l.r
	serving := r.Serving()
	notServing := time.NewTimer(r.opts.UpgradeTimeout)
	defer notServing.Stop()
	timeout := notServing.C
	for {
		select {
		case <-serving:
			serving, timeout = nil, nil
			notServing.Stop()
			if err := r.Ready(); err != nil {
				l.s.Close()
				return err
			}
			l.ready = true
			r.parentExited() // logs the parent's exit
		case <-timeout:
			l.s.Close()
			return fmt.Errorf("%w within UpgradeTimeout (%v): %s", ErrNotServing, r.opts.UpgradeTimeout, r.serving.addrs())
		case sig := <-l.sigs:
			if sig == syscall.SIGHUP {
				l.hangUp()
				continue
			}
			return l.terminate(sig)
		case err := <-l.upgraded:
			l.upgrading = false
			l.upgradeDone(err)
		case <-r.handedOff:
			return l.handOff()
		case err := <-l.errc:
			l.remaining--
			return l.served(err)
		}
	}
}

// hangUp handles SIGHUP while serving: an upgrade, unless one runs or this
// process is not ready.
func (l *serveLoop) hangUp() {
	switch {
	case !l.ready:
		l.r.log.Info("drainhttp/restart: SIGHUP ignored: not serving yet")
	case l.upgrading:
		l.r.log.Info("drainhttp/restart: SIGHUP ignored: an upgrade is already under way")
	default:
		l.r.log.Info("drainhttp/restart: SIGHUP received, upgrading")
		l.upgrading = true
		go func() { l.upgraded <- l.r.Upgrade(context.Background()) }()
	}
}

// upgradeDone logs how the Upgrade that SIGHUP started ended; a success
// is followed through r.handedOff.
func (l *serveLoop) upgradeDone(err error) {
	switch {
	case err == nil, errors.Is(err, ErrStopped):
	case errors.Is(err, ErrUpgradeInProgress):
		l.r.log.Info("drainhttp/restart: SIGHUP ignored: an upgrade is already under way")
	default:
		l.r.log.Warn("drainhttp/restart: upgrade failed; still serving", "err", err.Error())
	}
}

// terminate handles SIGTERM or SIGINT while serving.
func (l *serveLoop) terminate(sig os.Signal) error {
	r, s := l.r, l.s
	r.log.Info("drainhttp/restart: signal received, draining", "signal", sig.String())
	if r.stopUpgrades() {
		// Kill the new process still starting. This also removes the
		// files of Unix sockets from Listen, which otherwise waits for
		// the end of the drain.
		r.upg.Stop()
		r.upgrades.Wait() // prompt: the upgrade is stopped
	}
	if l.upgrading {
		l.upgrading = false
		l.upgradeDone(<-l.upgraded)
	}
	select {
	case <-r.handedOff:
		// The new process was ready as it was being stopped: it serves on
		// the sockets now, and this process must not drain them as its
		// own (a drain's socket filter would shut the new one out).
		return l.handOff()
	default:
	}
	if !l.ready && r.HasParent() {
		// The parent serves on these sockets, and goes on doing so.
		r.log.Info("drainhttp/restart: not ready yet: listeners left to the previous process, draining")
		return r.handOff(s, l.sigs, nil)
	}
	// tableflip holds a duplicate of every listening socket: unless it is
	// closed when the drain closes the listeners, clients that connect
	// after that wait in its backlog until the process exits, and are
	// reset then.
	s.RegisterOnShutdown(r.Stop)
	return r.drain(s, l.sigs, func() error { return s.Drain(context.Background()) }, nil)
}

// handOff is the parent's side once the new process is ready. It says so
// once this process no longer accepts: from then on, the new process alone
// takes new connections.
func (l *serveLoop) handOff() error {
	return l.r.handOff(l.s, l.sigs, func() {
		l.r.log.Info("drainhttp/restart: new process ready; listeners handed over, draining",
			"parent_shutdown_time", l.r.opts.ParentShutdownTime.String())
	})
}

// served handles the first serve function to return.
func (l *serveLoop) served(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		// Drained, shut down or closed by other means: wait until that
		// has finished, or main would exit and cut the requests still in
		// flight.
		l.r.Stop() // the listeners are closed: tableflip's copies too
		<-l.s.Done()
		return nil
	}
	l.s.Close()
	return err
}

// drain runs drain (s.Drain or s.DrainAfterHandoff) and returns its
// result. While it runs, SIGTERM or SIGINT cut it short
// (Server.StartDrainNow, once the drain has started: before, it would
// start a drain of its own) and SIGHUP is ignored: an upgrade is for a
// process that serves. started, if not nil, is called once the drain has
// started.
func (r *Restarter) drain(s *drainhttp.Server, sigs <-chan os.Signal, drain func() error, started func()) error {
	startedc := make(chan struct{})
	var once sync.Once
	cancel := s.OnPhase(func(drainhttp.PhaseChange) { once.Do(func() { close(startedc) }) })
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- drain() }()
	begun := (<-chan struct{})(startedc)
	hurry := false
	for {
		select {
		case <-begun:
			begun = nil
			if started != nil {
				started()
			}
			if hurry {
				s.StartDrainNow()
			}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				r.log.Info("drainhttp/restart: SIGHUP ignored: this process is draining")
				continue
			}
			r.log.Warn("drainhttp/restart: second signal, draining immediately", "signal", sig.String())
			hurry = true
			if begun == nil {
				s.StartDrainNow()
			}
		case err := <-done:
			if begun != nil && started != nil {
				started()
			}
			return err
		}
	}
}
