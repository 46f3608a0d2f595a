package restart

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Upgrade starts a new process from the binary at the path this one was
// started with (so a replaced binary is the one that runs), with the same
// arguments, and hands it the listeners, Envoy's hot restart. It returns
// nil once the new process has reported ready: this process must then stop
// accepting and drain (ServeUntilSignal does, with
// Server.DrainAfterHandoff).
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
// On failure (this process has not reported ready, the new process could
// not start, exited, or was not ready within UpgradeTimeout and was
// killed) the error wraps ErrUpgradeFailed, this process goes on serving
// and may try again. After a successful upgrade or Stop, the error wraps
// ErrStopped.
func (r *Restarter) Upgrade(ctx context.Context) error {
	r.mu.Lock()
	switch r.state {
	case stateUpgrading:
		r.mu.Unlock()
		return ErrUpgradeInProgress
	case stateHandedOff, stateStopped:
		r.mu.Unlock()
		return ErrStopped
	}
	r.state = stateUpgrading
	r.upgrades.Add(1)
	r.mu.Unlock()
	defer r.upgrades.Done()

	err := r.upgrade(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.state == stateStopped:
		if err == nil {
			// Stop raced with a successful upgrade: the new process
			// serves, so this one must still hand over.
			close(r.handedOff)
		}
		return ErrStopped
	case err != nil:
		r.state = stateServing
		return err
	}
	r.state = stateHandedOff
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
		r.log.Info("drainhttp/restart: upgrade deferred until the previous process has exited")
		select {
		case <-r.parentExited():
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the previous process to exit: %w", ErrUpgradeFailed, ctx.Err())
		case <-r.ctx.Done():
			return ErrStopped
		}
	}
	r.log.Info("drainhttp/restart: upgrading: starting a new process", "binary", os.Args[0], "upgrade_timeout", r.opts.UpgradeTimeout.String())
	for i := 0; ; i++ {
		err := r.upg.Upgrade()
		if err == nil {
			return nil
		}
		if r.ctx.Err() != nil {
			return ErrStopped
		}
		if i < upgradeRetries && transientUpgradeError(err) {
			t := time.NewTimer(upgradeRetryDelay)
			select {
			case <-t.C:
				continue
			case <-r.ctx.Done():
				t.Stop()
				return ErrStopped
			}
		}
		return fmt.Errorf("%w: %w", ErrUpgradeFailed, err)
	}
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
				r.log.Warn("drainhttp/restart: previous process exited uncleanly", "err", err.Error())
			default:
				r.log.Info("drainhttp/restart: previous process exited")
			}
			close(r.parentGone)
		}()
	})
	return r.parentGone
}
