package restart

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainhttp/drainhttp"
)

func TestServeUntilSignal_WaitsForAShutdownByOtherMeansToFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, pubPipe := rt.listen(":8080")
		entered, release := make(chan struct{}), make(chan struct{})
		s := &drainhttp.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			okHandler(w, r)
		})}
		_, ret := rt.serve(s, pub)
		c := pubPipe.client()
		defer c.CloseIdleConnections()
		got := make(chan error, 1)
		go func() {
			resp, err := c.Get("http://test/")
			if err == nil {
				resp.Body.Close()
			}
			got <- err
		}()
		<-entered
		shutdown := make(chan error, 1)
		go func() { shutdown <- s.Shutdown(context.Background()) }() // an admin endpoint, say
		synctest.Wait()
		// Serve has returned http.ErrServerClosed; Shutdown waits for the
		// request in flight, and so must ServeUntilSignal, or main would
		// exit and cut it.
		stillServing(t, ret, "while Shutdown waits for a request in flight")
		close(release)
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		select {
		case err := <-shutdown:
			if err != nil {
				t.Errorf("Shutdown = %v", err)
			}
		default:
			t.Error("ServeUntilSignal returned before Shutdown had")
		}
		if err := <-got; err != nil {
			t.Errorf("the request in flight: %v", err)
		}
		if !fu.isStopped() {
			t.Error("the upgrader was not stopped")
		}
	})
}

func TestServeUntilSignal_FailedUpgradeIsLoggedAndTheProcessKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, pubPipe := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)
		c := pubPipe.client()
		defer c.CloseIdleConnections()
		mgr, err := s.Manager()
		if err != nil {
			t.Fatal(err)
		}

		for _, why := range []string{"child pid=42 exited: exit status 2", "new child pid=43 timed out"} {
			sig <- syscall.SIGHUP
			(<-fu.upgrades) <- errors.New(why)
			synctest.Wait()
			getOK(t, c)
			if pubPipe.refuses() || !s.Ready() || mgr.Draining() {
				t.Fatalf("after a failed upgrade (%s): listener closed %v, ready %v, draining %v", why, pubPipe.refuses(), s.Ready(), mgr.Draining())
			}
		}
		failed := rt.logged("drainhttp/restart: upgrade failed; still serving")
		if len(failed) != 2 || failed[0]["level"] != "WARN" ||
			failed[0]["err"] != "drainhttp/restart: upgrade failed: child pid=42 exited: exit status 2" ||
			failed[1]["err"] != "drainhttp/restart: upgrade failed: new child pid=43 timed out" {
			t.Errorf("upgrade failure records: %v", failed)
		}

		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if !fu.isStopped() {
			t.Error("the upgrader was not stopped")
		}
		if len(rt.logged("drainhttp/restart: signal received, draining")) != 1 {
			t.Error("no record of the SIGTERM")
		}
	})
}

func TestServeUntilSignal_SIGHUPDuringAnUpgradeIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)

		sig <- syscall.SIGHUP
		reply := <-fu.upgrades
		sig <- syscall.SIGHUP
		synctest.Wait()
		fu.noUpgradePending(t)
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrUpgradeInProgress) {
			t.Errorf("Upgrade during an upgrade = %v, want ErrUpgradeInProgress", err)
		}
		if n := len(rt.logged("drainhttp/restart: SIGHUP ignored: an upgrade is already under way")); n != 1 {
			t.Errorf("%d records of the ignored SIGHUP, want 1", n)
		}
		reply <- nil
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrStopped) {
			t.Errorf("Upgrade after the handoff = %v, want ErrStopped", err)
		}
	})
}

func TestServeUntilSignal_SIGHUPWhileThePreviousProcessDrainsWaitsForItToExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.hasParent = true
		rt := newRestartTest(t, fu, Options{})
		pub, pubPipe := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)
		c := pubPipe.client()
		defer c.CloseIdleConnections()
		synctest.Wait()

		sig <- syscall.SIGHUP
		synctest.Wait()
		fu.noUpgradePending(t)
		if len(rt.logged("drainhttp/restart: upgrade deferred until the previous process has exited")) != 1 {
			t.Error("no record of the deferred upgrade")
		}
		time.Sleep(time.Minute) // the parent drains on
		sig <- syscall.SIGHUP   // coalesced with the deferred one
		synctest.Wait()
		fu.noUpgradePending(t)
		getOK(t, c) // serving all along
		if len(rt.logged("drainhttp/restart: SIGHUP ignored: an upgrade is already under way")) != 1 {
			t.Error("no record of the coalesced SIGHUP")
		}

		close(fu.parent) // the parent exits
		reply := <-fu.upgrades
		synctest.Wait()
		fu.noUpgradePending(t)
		if len(rt.logged("drainhttp/restart: previous process exited")) != 1 {
			t.Error("no record of the parent's exit")
		}
		reply <- nil
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
	})
}

func TestServeUntilSignal_SIGTERMDuringAnUpgradeKillsTheNewProcessAndDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: 5 * time.Second}
		sig, ret := rt.serve(s, pub)

		sig <- syscall.SIGHUP
		<-fu.upgrades // the new process starts, and is never ready
		sig <- syscall.SIGTERM
		start := time.Now()
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if !fu.isStopped() {
			t.Error("the new process was not killed (upgrader not stopped)")
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("drained for %v, want the 5s drain window of a SIGTERM", d)
		}
		if s.Status().Handoff {
			t.Error("the drain was a handoff's")
		}
		if n := len(rt.logged("drainhttp/restart: upgrade failed; still serving")); n != 0 {
			t.Errorf("%d upgrade failure records for a killed upgrade, want none", n)
		}
	})
}

func TestServeUntilSignal_SIGTERMAsTheNewProcessBecomesReadyHandsOver(t *testing.T) {
	for _, by := range []string{"SIGHUP", "Upgrade"} {
		t.Run(by, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fu := newFakeUpgrader()
				fu.readyAfterStop = true // tableflip saw the child ready before the stop
				rt := newRestartTest(t, fu, Options{})
				pub, pubPipe := rt.listen(":8080")
				s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour}
				sig, ret := rt.serve(s, pub)

				upgraded := make(chan error, 1)
				if by == "SIGHUP" {
					sig <- syscall.SIGHUP
					upgraded <- nil
				} else {
					go func() { upgraded <- rt.r.Upgrade(context.Background()) }() // an admin endpoint, say
				}
				<-fu.upgrades
				sig <- syscall.SIGTERM
				start := time.Now()
				if err := <-ret; err != nil {
					t.Fatalf("ServeUntilSignal = %v, want nil", err)
				}
				// The new process serves on the sockets: this one hands
				// them over (no filter, no window to wait out) rather
				// than draining them as its own.
				if st := s.Status(); !st.Handoff || !hasPhase(s, drainhttp.PhaseWindow, "handoff") {
					t.Errorf("status %+v, want a handoff drain", st)
				}
				if d := time.Since(start); d != 0 || !pubPipe.refuses() {
					t.Errorf("drained for %v, listener closed %v; want at once, closed", d, pubPipe.refuses())
				}
				<-upgraded
			})
		})
	}
}

func TestServeUntilSignal_SIGTERMBeforeReadyInAChildLeavesTheListenersToTheParent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.hasParent = true
		rt := newRestartTest(t, fu, Options{})
		pub, pubPipe := rt.listen(":8080")
		late, _ := rt.listen(":8443") // never served: the process is not ready
		defer late.Close()
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour}
		sig, ret := rt.serve(s, pub)
		synctest.Wait()
		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if st := s.Status(); !st.Handoff {
			t.Errorf("status %+v, want a drain without the listeners (the parent's still)", st)
		}
		if !pubPipe.refuses() || fu.readyCount() != 0 || fu.isStopped() {
			t.Errorf("listener closed %v, ready reported %d times, tableflip stopped %v; want closed, none, not stopped",
				pubPipe.refuses(), fu.readyCount(), fu.isStopped())
		}
	})
}

func TestServeUntilSignal_DeferredUpgradeEndsWithSIGTERM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.hasParent = true // and it never exits
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)
		synctest.Wait()
		sig <- syscall.SIGHUP
		synctest.Wait()
		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		fu.noUpgradePending(t)
	})
}

func TestServeUntilSignal_SecondSignalHurriesTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour}
		sig, ret := rt.serve(s, pub)
		synctest.Wait()
		sig <- syscall.SIGTERM
		time.Sleep(time.Minute)
		sig <- syscall.SIGHUP // ignored: draining
		sig <- syscall.SIGINT
		start := time.Now()
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("returned %v after the second signal, want at once", d)
		}
		if !hasPhase(s, drainhttp.PhaseClosingListeners, "hurried") {
			t.Errorf("timeline %v, want the window hurried", s.Status().Timeline)
		}
		if len(rt.logged("drainhttp/restart: SIGHUP ignored: this process is draining")) != 1 ||
			len(rt.logged("drainhttp/restart: second signal, draining immediately")) != 1 {
			t.Errorf("records:\n%s", rt.logs)
		}
		fu.noUpgradePending(t)
	})
}

func TestServeUntilSignal_ServeErrorIsReturnedAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		s := &drainhttp.Server{}
		boom := errors.New("boom")
		_, ret := rt.serveFuncs(s, func() error { return boom })
		if err := <-ret; !errors.Is(err, boom) {
			t.Fatalf("ServeUntilSignal = %v, want the serve error", err)
		}
		if !fu.isStopped() {
			t.Error("the upgrader was not stopped")
		}
		if st := s.Status(); st.Phase != drainhttp.PhaseClosed {
			t.Errorf("server phase %v, want closed", st.Phase)
		}
	})
}

func TestServeUntilSignal_ReturnsTheServersInvalidOption(t *testing.T) {
	fu := newFakeUpgrader()
	rt := newRestartTest(t, fu, Options{})
	s := &drainhttp.Server{DrainTimeout: -time.Second}
	if err := rt.r.ServeUntilSignal(s); !errors.Is(err, drainhttp.ErrInvalidOption) {
		t.Fatalf("ServeUntilSignal = %v, want ErrInvalidOption", err)
	}
	if !fu.isStopped() {
		t.Error("the upgrader was not stopped")
	}
}

func TestServeUntilSignal_UpgradeCalledElsewhereMakesItHandOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, pubPipe := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour}
		_, ret := rt.serve(s, pub)
		synctest.Wait()
		upgraded := make(chan error, 1)
		go func() { upgraded <- rt.r.Upgrade(context.Background()) }() // an admin endpoint, say
		(<-fu.upgrades) <- nil
		if err := <-upgraded; err != nil {
			t.Fatalf("Upgrade = %v", err)
		}
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if !pubPipe.refuses() {
			t.Error("the listener is still open after the handoff")
		}
	})
}

func TestServeUntilSignal_ClosesTheOtherListenersOnceDrained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drainTime = 5 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		adminLn, adminPipe := rt.listen(":9901")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: drainTime}
		admin := &http.Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serveFuncs(s,
			func() error { return s.Serve(pub) },
			func() error { return admin.Serve(adminLn) },
		)
		c := adminPipe.client()
		defer c.CloseIdleConnections()
		sig <- syscall.SIGTERM
		start := time.Now()
		time.Sleep(drainTime / 2)
		getOK(t, c) // the admin server answers during the drain
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil (the admin server's net.ErrClosed is not an error)", err)
		}
		if d := time.Since(start); d != drainTime || !adminPipe.refuses() {
			t.Errorf("returned %v after SIGTERM, admin listener closed %v; want %v, closed", d, adminPipe.refuses(), drainTime)
		}
		admin.Close()
	})
}
