package drainhttp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// phaseLog records a server's phase changes.
type phaseLog struct {
	mu      sync.Mutex
	changes []PhaseChange
}

func watchPhases(s *Server) *phaseLog {
	pl := &phaseLog{}
	s.OnPhase(func(pc PhaseChange) {
		pl.mu.Lock()
		pl.changes = append(pl.changes, pc)
		pl.mu.Unlock()
	})
	return pl
}

// at returns when phase started, after start, and why; ok is false if it
// has not.
func (pl *phaseLog) at(phase Phase, start time.Time) (d time.Duration, cause string, ok bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, pc := range pl.changes {
		if pc.Phase == phase {
			return pc.At.Sub(start), pc.Cause, true
		}
	}
	return 0, "", false
}

// adaptiveServer is a server with Adaptive{Probes: 3, Quiet: 1 s}, a
// shutdown delay of at most 30 s, a 10 s gradual window, and a mux with
// /ready.
func adaptiveServer(t *testing.T) (*Server, *pipeServer, *phaseLog) {
	mux := http.NewServeMux()
	mux.Handle("/", okHandler())
	s := &Server{Handler: mux, ShutdownDelay: 30 * time.Second, DrainTime: 10 * time.Second, Protocols: allProtocols(),
		Adaptive: &AdaptiveShutdown{Probes: 3, Quiet: time.Second}}
	mux.Handle("/ready", s.ReadyHandler())
	pl := watchPhases(s)
	return s, startPipeServer(t, s), pl
}

// prober checks /ready from ip every interval, each check on a new
// connection (as kubelet and HAProxy do), until stop is closed.
func (ps *pipeServer) prober(ip string, interval time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) {
	c := ps.clientFrom("http/1.1", ip)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			if resp, err := c.Get("http://pipe/ready"); err == nil {
				resp.Body.Close()
			}
		}
	})
}

// TestAdaptive_DelayEndsOnceEverySourceHasSeenKFailuresAndTrafficIsQuiet:
// two checkers probe every 300 ms and 500 ms; the delay ends when the
// slower one has seen its third 503 (1.45 s after the drain started) and
// no traffic has arrived for a second.
func TestAdaptive_DelayEndsOnceEverySourceHasSeenKFailuresAndTrafficIsQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(stop)
		ps.prober("10.0.0.1", 300*time.Millisecond, stop, &wg)
		ps.prober("10.0.0.2", 500*time.Millisecond, stop, &wg)
		do(t, ps.client("http/1.1"), "GET", "/")        // traffic, long before the drain
		time.Sleep(5*time.Second + 50*time.Millisecond) // between probes
		start := time.Now()
		s.StartDrain()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		d, cause, ok := pl.at(PhaseWindow, start)
		if !ok || cause != "released" || d != 1450*time.Millisecond {
			t.Fatalf("window started after %v (%q, %v); want 1.45 s, released", d, cause, ok)
		}
		st := s.Status()
		if st.Adaptive == nil || st.Adaptive.ProbeSources["10.0.0.2"] < 3 {
			t.Fatalf("adaptive status %+v", st.Adaptive)
		}
	})
}

// TestAdaptive_NewTrafficRestartsTheQuietPeriod, while probe connections
// (a new one per check) do not count as traffic.
func TestAdaptive_NewTrafficRestartsTheQuietPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(stop)
		ps.prober("10.0.0.1", 300*time.Millisecond, stop, &wg)
		time.Sleep(5*time.Second + 50*time.Millisecond)
		start := time.Now()
		s.StartDrain()
		// Probes at 0.05, 0.35 and 0.65 s, each on a new connection: the
		// third 503 releases at once, the probes' connections not being
		// traffic.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		d, cause, _ := pl.at(PhaseWindow, start)
		if cause != "released" || d != 650*time.Millisecond {
			t.Fatalf("window started after %v (%q); want 0.65 s, released", d, cause)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(stop)
		ps.prober("10.0.0.1", 300*time.Millisecond, stop, &wg)
		time.Sleep(5*time.Second + 50*time.Millisecond)
		start := time.Now()
		s.StartDrain()
		// A client arrives at 0.5 s and 1.4 s: the quiet period restarts
		// each time, so the delay ends at 2.4 s, though the probes had
		// their three 503s at 0.65 s, and probes keep arriving.
		time.Sleep(500 * time.Millisecond)
		do(t, ps.client("http/1.1"), "GET", "/")
		time.Sleep(900 * time.Millisecond)
		do(t, ps.client("http/1.1"), "GET", "/")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		d, cause, _ := pl.at(PhaseWindow, start)
		if cause != "released" || d != 2400*time.Millisecond {
			t.Fatalf("window started after %v (%q); want 2.4 s, released", d, cause)
		}
	})
}

// TestAdaptive_DelayEndsAtItsMaximum when a checker never sees enough
// failures (here it stops probing after one), or traffic never stops.
func TestAdaptive_DelayEndsAtItsMaximum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		ps.prober("10.0.0.1", 300*time.Millisecond, stop, &wg)
		time.Sleep(time.Second)
		start := time.Now()
		s.StartDrain()
		time.Sleep(400 * time.Millisecond) // one 503, then the checker goes away
		close(stop)
		wg.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		d, cause, _ := pl.at(PhaseWindow, start)
		if cause != "max_delay" || d != s.ShutdownDelay {
			t.Fatalf("window started after %v (%q); want %v, max_delay", d, cause, s.ShutdownDelay)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // a new client every 500 ms, for ever
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				c := ps.client("http/1.1")
				if resp, err := c.Get("http://pipe/"); err == nil {
					resp.Body.Close()
				}
				c.CloseIdleConnections()
			}
		})
		time.Sleep(2 * time.Second)
		start := time.Now()
		s.StartDrain()
		time.Sleep(31 * time.Second)
		close(stop)
		wg.Wait()
		d, cause, _ := pl.at(PhaseWindow, start)
		if cause != "max_delay" || d != s.ShutdownDelay {
			t.Fatalf("window started after %v (%q); want %v, max_delay", d, cause, s.ShutdownDelay)
		}
	})
}

// TestAdaptive_WindowEndsWhenNoConnectionIsLeftAndNoneArrives: Ctrl-C on
// an idle server exits after about Quiet, while a busy window runs its
// full length.
func TestAdaptive_WindowEndsWhenNoConnectionIsLeftAndNoneArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		c := ps.client("http/1.1")
		do(t, c, "GET", "/")
		c.CloseIdleConnections()
		start := time.Now()
		if err := s.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > s.Adaptive.Quiet {
			t.Fatalf("an idle server drained in %v, want within Quiet (%v)", d, s.Adaptive.Quiet)
		}
		if _, cause, _ := pl.at(PhaseClosingListeners, start); cause != "quiet" {
			t.Fatalf("the window ended with %q, want quiet", cause)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		c := ps.client("http/1.1") // one keep-alive client, busy all along
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if resp, err := c.Get("http://pipe/"); err == nil {
					resp.Body.Close()
				}
			}
		})
		time.Sleep(time.Second) // the client is connected
		start := time.Now()
		s.StartDrain()
		time.Sleep(time.Minute)
		close(stop)
		wg.Wait()
		d, _, _ := pl.at(PhaseWindow, start)
		e, cause, _ := pl.at(PhaseClosingListeners, start)
		if e-d != s.DrainTime || cause != "window_end" {
			t.Fatalf("a busy window lasted %v (%q), want the full %v", e-d, cause, s.DrainTime)
		}
	})
}

// TestAdaptive_WindowEndsAtTheIdleCloseOfAConnectionItsClientLeft: a load
// balancer's pooled connection, busy every 10 ms until the balancer took
// the server out, is closed as idle in its turn, and the window ends then:
// its client had stopped using it, so no reconnect is waited for (the
// close of a connection told on a response waits Quiet).
func TestAdaptive_WindowEndsAtTheIdleCloseOfAConnectionItsClientLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, ps, pl := adaptiveServer(t)
		var closedAt atomic.Pointer[time.Time]
		s.OnConnDrained(func(DrainedConn) { now := time.Now(); closedAt.Store(&now) })
		c := ps.client("http/1.1")
		for range 20 {
			do(t, c, "GET", "/")
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // the balancer took the server out
		start := time.Now()
		if err := s.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		e, cause, _ := pl.at(PhaseClosingListeners, start)
		at := closedAt.Load()
		if at == nil {
			t.Fatal("the connection was not drained")
		}
		if want := at.Sub(start); e != want || cause != "quiet" {
			t.Fatalf("the window ended %v after the drain started (%q), want %v (quiet): at the idle close", e, cause, want)
		}
	})
}

func TestAdaptive_RejectsNegativeOptions(t *testing.T) {
	for _, a := range []AdaptiveShutdown{{Probes: -1}, {Quiet: -time.Second}} {
		_, err := (&Server{Adaptive: &a}).Manager()
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "Adaptive.") {
			t.Errorf("%+v: %v", a, err)
		}
	}
}

// TestAdaptive_ProbesAnsweredAsTheDrainStartsCount: readiness fails the
// moment the drain starts, so a probe answered then is one its checker saw
// fail, and counts towards the Probes failures like any later one: a
// checker that has seen its three 503s releases the delay at once, not at
// its maximum.
func TestAdaptive_ProbesAnsweredAsTheDrainStartsCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, pl := adaptiveServer(t)
		ready := s.ReadyHandler()
		probe := func() int {
			r := httptest.NewRequest("GET", "/ready", nil)
			r.RemoteAddr = "10.0.0.1:4321"
			w := httptest.NewRecorder()
			ready.ServeHTTP(w, r)
			return w.Code
		}
		probe() // a checker the server has seen before the drain
		probe()
		time.Sleep(5 * time.Second)
		start := time.Now()
		s.StartDrain()
		for i := range 3 {
			if code := probe(); code != http.StatusServiceUnavailable {
				t.Fatalf("probe %d after StartDrain: %d, want 503", i+1, code)
			}
		}
		time.Sleep(40 * time.Second)
		synctest.Wait()
		if d, cause, ok := pl.at(PhaseWindow, start); !ok || cause != "released" || d != 0 {
			t.Fatalf("window started after %v (%q, %v); want at once, released", d, cause, ok)
		}
	})
}
