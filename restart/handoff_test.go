package restart

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainhttp/drainhttp"
)

// idleCloseMin is the least idleness after which drainhttp closes an idle
// HTTP/1.1 connection it has told to close: two seconds, and twice the
// longest gap its client has left between two requests if that is longer,
// so as not to race a request the client is sending (drainhttp's idle.go).
const idleCloseMin = 2 * time.Second

func TestRestarter_SIGHUPHandsOverThenDrainsAndReturnsNil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drainTime, drainTimeout = 10 * time.Second, 5 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{ParentShutdownTime: time.Minute})
		pub, pubPipe := rt.listen("127.0.0.1:8080")
		adminLn, adminPipe := rt.listen("127.0.0.1:9901") // served by another server
		adminServed := make(chan error, 1)
		admin := &http.Server{Handler: http.HandlerFunc(okHandler)}
		go func() { adminServed <- admin.Serve(adminLn) }()
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: drainTime, DrainTimeout: drainTimeout}
		sig, ret := rt.serve(s, pub)
		c := pubPipe.client()
		defer c.CloseIdleConnections()
		getOK(t, c) // leaves an idle keep-alive connection
		if n := fu.readyCount(); n != 1 {
			t.Fatalf("Ready called %d times once serving, want 1", n)
		}

		sig <- syscall.SIGHUP
		reply := <-fu.upgrades
		if pubPipe.refuses() {
			t.Fatal("the listener closed before the new process was ready")
		}
		reply <- nil // the new process is ready
		handoff := time.Now()
		synctest.Wait()
		if !pubPipe.refuses() || !adminPipe.refuses() {
			t.Fatalf("after the handoff: public listener closed %v, admin listener closed %v; want both",
				pubPipe.refuses(), adminPipe.refuses())
		}
		if st := s.Status(); !st.Handoff || s.Ready() {
			t.Errorf("the old process while it drains: handoff %v, ready %v; want a handoff, not ready", st.Handoff, s.Ready())
		}
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		// The idle connection is closed at the later of two instants:
		// its turn in the proactive part of the window, at a uniformly
		// random time in the window's first quarter (drainTime/4 =
		// 2.5 s), and the moment it has been idle long enough not to race
		// a request (idleCloseMin = 2 s after the response, which was
		// sent at the handoff's instant; one request shows no gap between
		// requests, so no longer). Then nothing is left and nothing can
		// come, so the drain ends. The bound is therefore max(2.5 s, 2 s)
		// = 2.5 s, as before the idle rule, and it now has a floor of 2 s.
		// (A client that had left the connection idle for g between two
		// requests would push its close to 2g after its last response,
		// within the turn plus DrainTimeout; see
		// TestHandoff_IdleConnectionEndsOnceIdleLongerThanItsClientsRhythm.)
		if d := time.Since(handoff); d < idleCloseMin || d > drainTime/4 {
			t.Errorf("the old process drained for %v, want until its idle connection was closed, in [%v, %v]", d, idleCloseMin, drainTime/4)
		}
		if !fu.isStopped() {
			t.Error("the upgrader was not stopped")
		}
		if err := <-adminServed; !errors.Is(err, net.ErrClosed) {
			t.Errorf("the admin server's Serve = %v, want net.ErrClosed", err)
		}
		if len(rt.logged("drainhttp/restart: new process ready; listeners handed over, draining")) != 1 {
			t.Errorf("no handoff record:\n%s", rt.logs)
		}
		if len(rt.logged("drainhttp/restart: parent shutdown time reached; remaining connections closed")) != 0 {
			t.Error("the drain was cut short by the parent shutdown time")
		}
		if st := s.Stats(); st.Forced != 0 || st.OpenTotal != 0 || st.Drained["proactive"] != 1 {
			t.Errorf("stats after the handoff drain: %+v", st)
		}
	})
}

func TestHandoff_WithoutConnectionsEndsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{})
		pub, _ := rt.listen(":8080")
		s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour}
		sig, ret := rt.serve(s, pub)
		synctest.Wait()
		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		handoff := time.Now()
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if d := time.Since(handoff); d != 0 {
			t.Errorf("an old process without connections drained for %v, want none", d)
		}
	})
}

func TestHandoff_WaitsForInFlightRequestsThenEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const work = 20 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{ParentShutdownTime: 3 * time.Hour})
		pub, pubPipe := rt.listen(":8080")
		entered := make(chan struct{})
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			time.Sleep(work)
			okHandler(w, r)
		})
		// Immediate: the connection's proactive turn is at the start of
		// the window, while its request runs.
		s := &drainhttp.Server{Handler: slow, DrainTime: time.Hour, DrainTimeout: time.Hour, Strategy: drainhttp.Immediate}
		sig, ret := rt.serve(s, pub)
		c := pubPipe.client()
		defer c.CloseIdleConnections()
		var resp *http.Response
		done := make(chan error, 1)
		go func() {
			var err error
			resp, err = c.Get("http://test/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
		<-entered
		start := time.Now()
		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		// The connection, told to close while its request ran, is closed
		// once idle for idleCloseMin; then nothing is left.
		if d, want := time.Since(start), work+idleCloseMin; d != want {
			t.Errorf("returned %v after the handoff, want once the request in flight was done and its connection closed (%v)", d, want)
		}
		if err := <-done; err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the request in flight: %v, %v; want 200", err, resp)
		}
	})
}

// TestHandoff_IdleConnectionEndsOnceIdleLongerThanItsClientsRhythm shows
// what bounds the parent's drain when only idle connections are left: each
// is closed once it has been idle for idleCloseMin, or twice the longest gap
// its client left between two requests if that is longer, counted from its
// last response, and at the latest at its deadline, DrainTimeout after it
// was told to close (its proactive turn: at once with Immediate).
func TestHandoff_IdleConnectionEndsOnceIdleLongerThanItsClientsRhythm(t *testing.T) {
	for _, tc := range []struct {
		name         string
		gap          time.Duration // between the client's two requests; 0: one request
		drainTimeout time.Duration
		want         time.Duration // from the handoff, just after the last response
	}{
		{"one request", 0, 10 * time.Second, idleCloseMin},
		{"short gaps", 300 * time.Millisecond, 10 * time.Second, idleCloseMin},
		{"3s gaps", 3 * time.Second, 10 * time.Second, 6 * time.Second},
		{"3s gaps, 5s deadline", 3 * time.Second, 5 * time.Second, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fu := newFakeUpgrader()
				rt := newRestartTest(t, fu, Options{})
				pub, pubPipe := rt.listen(":8080")
				s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour,
					DrainTimeout: tc.drainTimeout, Strategy: drainhttp.Immediate}
				sig, ret := rt.serve(s, pub)
				c := pubPipe.client()
				defer c.CloseIdleConnections()
				getOK(t, c)
				if tc.gap > 0 {
					time.Sleep(tc.gap)
					getOK(t, c)
				}
				sig <- syscall.SIGHUP
				(<-fu.upgrades) <- nil
				handoff := time.Now()
				if err := <-ret; err != nil {
					t.Fatalf("ServeUntilSignal = %v, want nil", err)
				}
				if d := time.Since(handoff); d != tc.want {
					t.Errorf("the idle connection ended %v after the handoff, want %v", d, tc.want)
				}
				if st := s.Stats(); st.Forced != 0 || st.Drained["proactive"] != 1 {
					t.Errorf("stats: %+v, want one proactive drain, none forced", st)
				}
			})
		})
	}
}

func TestHandoff_ParentShutdownTimeClosesWhatIsLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const parentShutdown = 30 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{ParentShutdownTime: parentShutdown})
		pub, pubPipe := rt.listen(":8080")
		entered := make(chan struct{})
		stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done()
		})
		s := &drainhttp.Server{Handler: stuck, DrainTime: time.Hour, DrainTimeout: time.Hour}
		sig, ret := rt.serve(s, pub)
		c := pubPipe.client()
		defer c.CloseIdleConnections()
		failed := make(chan error, 1)
		go func() {
			resp, err := c.Get("http://test/")
			if err == nil {
				resp.Body.Close()
			}
			failed <- err
		}()
		<-entered

		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		handoff := time.Now()
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if d := time.Since(handoff); d != parentShutdown {
			t.Errorf("returned %v after the handoff, want ParentShutdownTime (%v)", d, parentShutdown)
		}
		if err := <-failed; err == nil {
			t.Error("the stuck request succeeded, want its connection closed")
		}
		warn := rt.logged("drainhttp/restart: parent shutdown time reached; remaining connections closed")
		if len(warn) != 1 || warn[0]["level"] != "WARN" || warn[0]["forced"] != float64(1) {
			t.Errorf("parent shutdown records: %v", warn)
		}
		if short := rt.logged("drainhttp/restart: ParentShutdownTime is shorter than the drain; it may be cut short"); len(short) != 1 || short[0]["drain_bound"] != "2h0m0s" {
			t.Errorf("short ParentShutdownTime records: %v", short)
		}
	})
}

func TestHandoff_SecondSignalHurriesTheHandoffDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, Options{ParentShutdownTime: 3 * time.Hour})
		pub, pubPipe := rt.listen(":8080")
		// A long poll that ends when the server's shutdown functions run:
		// after the drain window, which lasts an hour unless hurried.
		shutdown := make(chan struct{})
		poll := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-shutdown
			w.Header().Set("Connection", "close")
			okHandler(w, r)
		})
		s := &drainhttp.Server{Handler: poll, DrainTime: time.Hour, DrainTimeout: time.Hour}
		s.RegisterOnShutdown(func() { close(shutdown) })
		sig, ret := rt.serve(s, pub)
		c := pubPipe.client()
		defer c.CloseIdleConnections()
		polled := make(chan error, 1)
		go func() {
			resp, err := c.Get("http://test/")
			if err == nil {
				resp.Body.Close()
			}
			polled <- err
		}()
		synctest.Wait()
		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		synctest.Wait()
		start := time.Now()
		sig <- syscall.SIGHUP // the new process's business now
		synctest.Wait()
		fu.noUpgradePending(t)
		time.Sleep(time.Minute)
		stillServing(t, ret, "before the second signal, with a long poll open")
		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if d := time.Since(start); d != time.Minute {
			t.Errorf("returned %v after the handoff, want at once after SIGTERM (1m)", d)
		}
		if err := <-polled; err != nil {
			t.Errorf("the long poll: %v", err)
		}
		if !hasPhase(s, drainhttp.PhaseClosingConns, "hurried") {
			t.Errorf("timeline %v, want the window hurried", s.Status().Timeline)
		}
		if len(rt.logged("drainhttp/restart: SIGHUP ignored: this process is draining")) != 1 {
			t.Error("no record of the ignored SIGHUP")
		}
		if len(rt.logged("drainhttp/restart: second signal, draining immediately")) != 1 {
			t.Error("no record of the hurried drain")
		}
	})
}

// hasPhase reports whether s entered phase p for cause.
func hasPhase(s *drainhttp.Server, p drainhttp.Phase, cause string) bool {
	for _, pc := range s.Status().Timeline {
		if pc.Phase == p && pc.Cause == cause {
			return true
		}
	}
	return false
}

func TestDrainBound_IsTheWindowWithItsJitterPlusDrainTimeout(t *testing.T) {
	for _, tc := range []struct {
		s    *drainhttp.Server
		want time.Duration
	}{
		{&drainhttp.Server{}, drainhttp.DefaultDrainTimeout},
		{&drainhttp.Server{DrainTime: 30 * time.Second, DrainTimeout: 10 * time.Second}, 40 * time.Second},
		{&drainhttp.Server{DrainTime: 30 * time.Second, DrainTimeJitter: 0.5}, 45*time.Second + drainhttp.DefaultDrainTimeout},
		// No shutdown delay after a handoff.
		{&drainhttp.Server{DrainTime: time.Minute, ShutdownDelay: time.Hour}, time.Minute + drainhttp.DefaultDrainTimeout},
	} {
		if got := drainBound(tc.s); got != tc.want {
			t.Errorf("drainBound(DrainTime %v, jitter %v, DrainTimeout %v) = %v, want %v",
				tc.s.DrainTime, tc.s.DrainTimeJitter, tc.s.DrainTimeout, got, tc.want)
		}
	}
}
