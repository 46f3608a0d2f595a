package restart

import (
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainhttp/drainhttp"
)

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestServing_ClosesOnceEveryListenerFromListenIsAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		defer rt.r.Stop()
		a, _ := rt.listen(":1")
		b, _ := rt.listen(":2")
		serving := rt.r.Serving()
		go a.Accept()
		synctest.Wait()
		if isClosed(serving) {
			t.Fatal("Serving is closed while one listener is not accepted on")
		}
		go b.Accept()
		synctest.Wait()
		if !isClosed(serving) {
			t.Fatal("Serving is not closed once every listener is accepted on")
		}
		rt.listen(":3") // too late to count
		if !isClosed(rt.r.Serving()) {
			t.Error("a listener from a Listen after Serving closed made it open again")
		}
		a.Close()
		b.Close()
	})
}

func TestServing_IsClosedAtOnceWithoutListeners(t *testing.T) {
	fu := newFakeUpgrader()
	rt := newRestartTest(t, fu, Options{})
	defer rt.r.Stop()
	if !isClosed(rt.r.Serving()) {
		t.Error("Serving is not closed, with no listener to serve")
	}
}

func TestServeUntilSignal_ReportsReadyOnlyOnceEveryListenerIsServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		late, latePipe := rt.listen(":8443")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		gate := make(chan struct{})
		sig, ret := rt.serveFuncs(s,
			func() error { return s.Serve(pub) },
			func() error { <-gate; return s.Serve(late) }, // still setting up
		)
		time.Sleep(10 * time.Second)
		sig <- syscall.SIGHUP
		synctest.Wait()
		if n := fu.readyCount(); n != 0 {
			t.Fatalf("Ready called %d times while a listener is not served yet, want 0", n)
		}
		if len(rt.logged("drainhttp/restart: SIGHUP ignored: not serving yet")) != 1 {
			t.Error("no record of the SIGHUP ignored before serving")
		}
		fu.noUpgradePending(t)
		close(gate)
		synctest.Wait()
		if n := fu.readyCount(); n != 1 {
			t.Fatalf("Ready called %d times once every listener is served, want 1", n)
		}
		c := latePipe.client()
		defer c.CloseIdleConnections()
		getOK(t, c)
		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
	})
}

func TestServeUntilSignal_ServeTLSFailingOnItsCertificateIsReturnedWithoutReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.hasParent = true // the parent serves until this process is ready
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		secure, _ := rt.listen(":8443")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		_, ret := rt.serveFuncs(s,
			func() error { return s.Serve(pub) },
			func() error { return s.ServeTLS(secure, "/nonexistent/cert.pem", "/nonexistent/key.pem") },
		)
		err := <-ret
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ServeUntilSignal = %v, want ServeTLS's error", err)
		}
		if n := fu.readyCount(); n != 0 {
			t.Errorf("Ready called %d times by a process whose ServeTLS failed, want 0: its parent would have stopped serving", n)
		}
		if fu.isStopped() {
			t.Error("tableflip was stopped, which would unlink the parent's Unix sockets")
		}
	})
}

func TestServeUntilSignal_GivesUpWhenAListenerIsNeverServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const upgradeTimeout = 30 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{UpgradeTimeout: upgradeTimeout})
		pub, _ := rt.listen(":8080")
		forgotten, _ := rt.listen(":9901")
		defer forgotten.Close()
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		start := time.Now()
		_, ret := rt.serve(s, pub)
		err := <-ret
		if !errors.Is(err, ErrNotServing) || !strings.HasSuffix(err.Error(), ": pipe :9901") {
			t.Fatalf("ServeUntilSignal = %v, want ErrNotServing naming the listener", err)
		}
		if d := time.Since(start); d != upgradeTimeout {
			t.Errorf("gave up after %v, want UpgradeTimeout (%v)", d, upgradeTimeout)
		}
		if n := fu.readyCount(); n != 0 {
			t.Errorf("Ready called %d times, want 0", n)
		}
	})
}

func TestServeUntilSignal_ReadyFailureClosesTheServerAndIsReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.readyErr = errors.New("tableflip: can't write PID file: permission denied")
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
		_, ret := rt.serve(s, pub)
		if err := <-ret; !errors.Is(err, ErrReadyFailed) || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("ServeUntilSignal = %v, want ErrReadyFailed and the cause", err)
		}
		if st := s.Status(); st.Phase != drainhttp.PhaseClosed {
			t.Errorf("server phase %v, want closed", st.Phase)
		}
		if err := rt.r.Ready(); !errors.Is(err, ErrReadyFailed) || fu.readyCount() != 1 {
			t.Errorf("Ready again = %v after %d calls to tableflip, want the first result, one call", err, fu.readyCount())
		}
	})
}
