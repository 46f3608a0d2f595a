package restart

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestUpgrade_NeedsReadyAndRetriesTableflipsTransientRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrUpgradeFailed) {
			t.Fatalf("Upgrade before Ready = %v, want ErrUpgradeFailed", err)
		}
		fu.noUpgradePending(t)
		if err := rt.r.Ready(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- rt.r.Upgrade(context.Background()) }()
		start := time.Now()
		(<-fu.upgrades) <- errors.New("process is not ready yet")
		(<-fu.upgrades) <- errors.New("parent hasn't exited")
		(<-fu.upgrades) <- nil
		if err := <-done; err != nil {
			t.Fatalf("Upgrade = %v, want nil after two transient refusals", err)
		}
		if d := time.Since(start); d != 2*upgradeRetryDelay {
			t.Errorf("two retries took %v, want %v", d, 2*upgradeRetryDelay)
		}
		select {
		case <-rt.r.handedOff:
		default:
			t.Error("a successful Upgrade did not signal the handoff")
		}
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrStopped) {
			t.Errorf("Upgrade after a successful one = %v, want ErrStopped", err)
		}
		rt.r.Stop()
	})
}

func TestUpgrade_FailureWrapsTableflipsReasonAndAllowsAnotherTry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		defer rt.r.Stop()
		if err := rt.r.Ready(); err != nil {
			t.Fatal(err)
		}
		for range upgradeRetries + 1 { // a refusal that does not go away
			done := make(chan error, 1)
			go func() { done <- rt.r.Upgrade(context.Background()) }()
			for range upgradeRetries + 1 {
				(<-fu.upgrades) <- errors.New("process is not ready yet")
			}
			if err := <-done; !errors.Is(err, ErrUpgradeFailed) || !strings.HasSuffix(err.Error(), "process is not ready yet") {
				t.Fatalf("Upgrade = %v, want ErrUpgradeFailed with tableflip's reason", err)
			}
			fu.noUpgradePending(t)
		}
		done := make(chan error, 1)
		go func() { done <- rt.r.Upgrade(context.Background()) }()
		(<-fu.upgrades) <- errors.New("child pid=7 exited: exit status 1")
		if err := <-done; !errors.Is(err, ErrUpgradeFailed) {
			t.Fatalf("Upgrade = %v, want ErrUpgradeFailed", err)
		}
	})
}

func TestUpgrade_WaitsForThePreviousProcessUntilCtxEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.hasParent = true // and it never exits
		rt := newRestartTest(t, fu, Options{})
		defer rt.r.Stop()
		if err := rt.r.Ready(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := rt.r.Upgrade(ctx)
		if !errors.Is(err, ErrUpgradeFailed) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Upgrade = %v, want ErrUpgradeFailed and the deadline", err)
		}
		fu.noUpgradePending(t)
		if len(rt.logged("drainhttp/restart: upgrade deferred until the previous process has exited")) != 1 {
			t.Error("no record of the deferred upgrade")
		}
	})
}

func TestUpgrade_StopInterruptsAnUpgradeAndEndsTheRestarter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		if err := rt.r.Ready(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- rt.r.Upgrade(context.Background()) }()
		<-fu.upgrades // the new process starts
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrUpgradeInProgress) {
			t.Errorf("Upgrade during an upgrade = %v, want ErrUpgradeInProgress", err)
		}
		rt.r.Stop()
		if err := <-done; !errors.Is(err, ErrStopped) {
			t.Errorf("Upgrade interrupted by Stop = %v, want ErrStopped", err)
		}
		if !fu.isStopped() {
			t.Error("tableflip was not stopped (the new process would not be killed)")
		}
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrStopped) {
			t.Errorf("Upgrade after Stop = %v, want ErrStopped", err)
		}
	})
}
