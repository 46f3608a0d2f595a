package drainhttp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
)

// pipeTracker is a tracker over in-memory connections, for deterministic
// tests of the connection policies inside a synctest bubble.
type pipeTracker struct {
	t   *testing.T
	tr  *tracker
	mgr *Manager
}

func newPipeTracker(t *testing.T, mopts ManagerOptions, policy ConnPolicy, drainTimeout time.Duration, endRate float64) *pipeTracker {
	t.Helper()
	mgr := mustManager(t, mopts)
	tr := newTracker(mgr, mgr.opts.Clock, drainTimeout, slog.New(slog.DiscardHandler), nil)
	p := policy.normalize(drainTimeout)
	tr.policy = &p
	tr.h2MinAge = 0 // see TestTracker_YoungHTTP2ConnectionsGetTheirGoAwayWhenOldEnough
	if endRate > 0 {
		tr.limiter = rate.NewLimiter(rate.Limit(endRate), 1)
	}
	return &pipeTracker{t: t, tr: tr, mgr: mgr}
}

// conn adds a connection in the given state and protocol; the test's end
// of the pipe is drained so that writes never block.
func (pt *pipeTracker) conn(state http.ConnState, proto Protocol) *trackedConn {
	server, client := net.Pipe()
	pt.t.Cleanup(func() { client.Close() })
	go io.Copy(io.Discard, client)
	c := pt.tr.add(server, nil)
	if proto != HTTP1 {
		c.setHTTP2(proto, func() {})
	}
	if state != http.StateNew {
		c.setState(state)
	}
	pt.t.Cleanup(func() { c.Close() })
	return c
}

// markedAfter returns, for each of conns that has been told to close, how
// long after start that was.
func markedAfter(conns []*trackedConn, start time.Time) []time.Duration {
	var at []time.Duration
	for _, c := range conns {
		c.mu.Lock()
		if c.marked() {
			at = append(at, c.d.markedAt.Sub(start))
		}
		c.mu.Unlock()
	}
	return at
}

func (c *trackedConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// request runs one request on c through the middleware and returns the
// response's Connection header and status.
func (pt *pipeTracker) request(mw http.Handler, c *trackedConn, path string) (connection string, status int) {
	r := httptest.NewRequest("GET", path, nil)
	r = r.WithContext(pt.tr.connContext(context.Background(), c))
	w := httptest.NewRecorder()
	mw.ServeHTTP(w, r)
	return w.Header().Get("Connection"), w.Code
}

func TestConnPolicy_Validation(t *testing.T) {
	for _, p := range []ConnPolicy{
		{MaxConnectionAge: -1},
		{MaxConnectionAgeJitter: -0.1},
		{MaxConnectionAgeJitter: 1},
		{MaxConnectionAgeGrace: -1},
		{MaxRequestsPerConnection: -1},
		{GoAwayChance: -0.01},
		{GoAwayChance: 0.03},
	} {
		if err := p.validate(); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%+v: %v, want ErrInvalidOption", p, err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{}
		if err := s.Serve(WithPolicy(l, p)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("Serve(WithPolicy(%+v)) = %v, want ErrInvalidOption", p, err)
		}
		l.Close()
	}
	for _, ra := range []RetryAfter{{After: -1}, {After: 2}, {Status: 200}, {Status: 600}, {Delay: -time.Second}} {
		if err := (&Server{RetryAfter: &ra}).init(); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("RetryAfter %+v: %v, want ErrInvalidOption", ra, err)
		}
	}
	if err := (&Server{ProactiveEndRate: -1}).init(); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("negative ProactiveEndRate: %v", err)
	}
}

func TestConnPolicy_MaxConnectionAgeWithJitterAndGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		policy := ConnPolicy{MaxConnectionAge: 10 * time.Minute, MaxConnectionAgeGrace: 30 * time.Second}
		// rand 0.75 moves the age by +0.5 of the default ±10 % jitter.
		pt := newPipeTracker(t, ManagerOptions{Rand: func() float64 { return 0.75 }}, policy, time.Hour, 0)
		start := time.Now()
		idle := pt.conn(http.StateIdle, HTTP1)
		busy := pt.conn(http.StateActive, H2C)

		time.Sleep(10*time.Minute + 30*time.Second - time.Nanosecond)
		if ConnDrainState(idle.drain.Load()) != ConnNotDraining || ConnDrainState(busy.drain.Load()) != ConnNotDraining {
			t.Fatal("connections drained before their jittered age of 10m30s")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !idle.isClosed() {
			t.Fatalf("idle HTTP/1.1 connection not closed at its age (%v)", time.Since(start))
		}
		if ConnDrainState(busy.drain.Load()) != ConnDraining || busy.isClosed() {
			t.Fatal("busy connection not draining at its age")
		}
		time.Sleep(30*time.Second - time.Nanosecond)
		synctest.Wait()
		if busy.isClosed() {
			t.Fatal("busy connection closed before its grace ran out")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !busy.isClosed() {
			t.Fatal("busy connection still open after MaxConnectionAgeGrace")
		}
		if got := pt.tr.drained[ReasonMaxAge].Load(); got != 2 || pt.tr.forced.Load() != 1 {
			t.Fatalf("max_age closes %d, forced %d; want 2 and 1", got, pt.tr.forced.Load())
		}
	})
}

func TestConnPolicy_MaxConnectionAgeJitterSpreadsAges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		policy := ConnPolicy{MaxConnectionAge: 10 * time.Minute}
		pt := newPipeTracker(t, ManagerOptions{Rand: seededRand(7)}, policy, time.Second, 0)
		start := time.Now()
		var conns []*trackedConn
		for range 200 {
			conns = append(conns, pt.conn(http.StateActive, HTTP1))
		}
		time.Sleep(11*time.Minute + time.Second)
		ages := markedAfter(conns, start)
		if len(ages) != len(conns) {
			t.Fatalf("%d of %d connections reached their age", len(ages), len(conns))
		}
		lo, hi := slices.Min(ages), slices.Max(ages)
		if lo < 9*time.Minute || hi > 11*time.Minute || lo > 9*time.Minute+12*time.Second || hi < 11*time.Minute-12*time.Second {
			t.Fatalf("ages span [%v, %v], want spread over [9m, 11m]", lo, hi)
		}
	})
}

func TestConnPolicy_MaxRequestsPerConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt := newPipeTracker(t, ManagerOptions{DrainTime: time.Hour}, ConnPolicy{MaxRequestsPerConnection: 3}, time.Minute, 0)
		mw := &middleware{d: pt.mgr, next: http.HandlerFunc(okHandler)}
		for _, proto := range []Protocol{HTTP1, H2} {
			c := pt.conn(http.StateActive, proto)
			var got []string
			for range 4 {
				h, _ := pt.request(mw, c, "/")
				got = append(got, h)
			}
			if want := []string{"", "", "close", "close"}; !slices.Equal(got, want) {
				t.Fatalf("%v: Connection headers %q, want %q", proto, got, want)
			}
			c.Close()
		}
		if pt.tr.drained[ReasonMaxRequests].Load() != 2 || pt.tr.goaways.Load() != 1 {
			t.Fatalf("max_requests closes %d, GOAWAYs %d; want 2 and 1", pt.tr.drained[ReasonMaxRequests].Load(), pt.tr.goaways.Load())
		}
	})
}

func TestConnPolicy_GoAwayChanceIsHTTP2OnlyAndMatchesItsProbability(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const chance, n = 0.02, 20000
		for _, http1 := range []bool{false, true} {
			pt := newPipeTracker(t, ManagerOptions{Rand: seededRand(11)}, ConnPolicy{GoAwayChance: chance, GoAwayChanceHTTP1: http1}, time.Minute, 0)
			mw := &middleware{d: pt.mgr, next: http.HandlerFunc(okHandler)}
			var closedH1, closedH2 int
			for range n {
				for _, proto := range []Protocol{HTTP1, H2} {
					c := pt.tr.add(nopConn{}, nil)
					c.proto.Store(uint32(proto))
					if h, _ := pt.request(mw, c, "/"); h == "close" {
						if proto == HTTP1 {
							closedH1++
						} else {
							closedH2++
						}
					}
					c.Close()
				}
			}
			bound := 6 * math.Sqrt(n*chance*(1-chance))
			if math.Abs(float64(closedH2)-n*chance) > bound {
				t.Errorf("HTTP/2: %d of %d requests closed their connection, want %v ± %.0f", closedH2, n, n*chance, bound)
			}
			if !http1 && closedH1 != 0 {
				t.Errorf("HTTP/1.1 closed %d times without GoAwayChanceHTTP1", closedH1)
			}
			if http1 && math.Abs(float64(closedH1)-n*chance) > bound {
				t.Errorf("HTTP/1.1 with GoAwayChanceHTTP1: %d of %d closed, want %v ± %.0f", closedH1, n, n*chance, bound)
			}
		}
	})
}

func TestRetryAfter_AnswersLateRequestsOfTheDrainExceptExemptPaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt := newPipeTracker(t, ManagerOptions{DrainTime: 100 * time.Second, Strategy: Immediate}, ConnPolicy{}, time.Hour, 0)
		ra := &RetryAfter{After: 0.5, Status: http.StatusTooManyRequests, Delay: 1500 * time.Millisecond, ExemptPaths: []string{"/healthz"}}
		mw := &middleware{d: pt.mgr, next: http.HandlerFunc(okHandler), retry: newRetryAfter(ra, pt.mgr)}
		serve := func(path string) (*httptest.ResponseRecorder, *trackedConn) {
			c := pt.conn(http.StateActive, HTTP1)
			r := httptest.NewRequest("GET", path, nil).WithContext(pt.tr.connContext(context.Background(), c))
			w := httptest.NewRecorder()
			mw.ServeHTTP(w, r)
			return w, c
		}
		if w, _ := serve("/"); w.Code != 200 {
			t.Fatalf("before the drain: %d", w.Code)
		}
		pt.mgr.StartDrainSequence(nil)
		time.Sleep(49 * time.Second)
		if w, _ := serve("/"); w.Code != 200 || w.Header().Get("Connection") != "close" {
			t.Fatalf("at 49%% of the drain: %d %v, want served with Connection: close", w.Code, w.Header())
		}
		time.Sleep(time.Second)
		w, _ := serve("/work")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" || w.Header().Get("Connection") != "close" {
			t.Fatalf("at 50%% of the drain: %d %v, want 429 with Retry-After: 2 and Connection: close", w.Code, w.Header())
		}
		if w, _ := serve("/healthz"); w.Code != 200 {
			t.Fatalf("exempt path at 50%%: %d", w.Code)
		}
		<-pt.mgr.Done()
	})
}

func TestProactiveEndRate_SpacesEndsAndSkipsNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt := newPipeTracker(t, ManagerOptions{Strategy: Immediate, DrainTime: time.Hour}, ConnPolicy{}, time.Hour, 10)
		var conns []*trackedConn
		for range 50 {
			conns = append(conns, pt.conn(http.StateActive, HTTP1))
		}
		start := time.Now()
		pt.mgr.StartDrainSequence(nil)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		at := markedAfter(conns, start)
		if len(at) != len(conns) {
			t.Fatalf("%d of %d connections ended within 5s at 10/s", len(at), len(conns))
		}
		slices.Sort(at)
		for i := range at {
			// x/time/rate computes in float64 seconds: allow a microsecond.
			if want := time.Duration(i) * 100 * time.Millisecond; (at[i] - want).Abs() > time.Microsecond {
				t.Fatalf("end %d at %v, want %v (10 per second, one at a time)", i, at[i], want)
			}
		}
	})
}

func TestServer_MaxConnectionAgeCyclesConnectionsUnderLoadWithoutLoss(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", okHandler)
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	ts := startServer(t, &Server{Handler: mux, ConnPolicy: ConnPolicy{MaxConnectionAge: time.Second}, DrainTimeout: 2 * time.Second})
	var requests, failures atomic.Int64
	deadline := time.Now().Add(3500 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 {
		proto := []string{"http/1.1", "h2c"}[i%2]
		c, url := ts.client(proto)
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := c.Get(url + "/")
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("%s: %v", proto, err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	st := ts.s.Stats()
	t.Logf("%d requests, %d failed, stats %+v", requests.Load(), failures.Load(), st)
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failures.Load(), requests.Load())
	}
	if st.Drained["max_age"] < 8 || st.Accepted < 16 {
		t.Fatalf("connections did not cycle by age: %+v", st)
	}
}

// nopConn stands in for a socket where a test needs many connection
// records and no I/O.
type nopConn struct{ net.Conn }

func (nopConn) Close() error         { return nil }
func (nopConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

func TestTracker_YoungHTTP2ConnectionsGetTheirGoAwayWhenOldEnough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt := newPipeTracker(t, ManagerOptions{Strategy: Immediate, DrainTime: time.Hour}, ConnPolicy{}, time.Hour, 0)
		pt.tr.h2MinAge = h2MinAge
		mw := &middleware{d: pt.mgr, next: http.HandlerFunc(okHandler)}
		var sent atomic.Int32
		server, client := net.Pipe()
		defer client.Close()
		c := pt.tr.add(server, nil)
		defer c.Close()
		c.setHTTP2(H2C, func() { sent.Add(1) })
		c.setState(http.StateActive) // preface
		c.setState(http.StateIdle)
		c.setState(http.StateActive) // first stream
		pt.mgr.StartDrainSequence(nil)
		time.Sleep(h2MinAge / 2)
		if h, _ := pt.request(mw, c, "/"); h != "" || sent.Load() != 0 {
			t.Fatalf("connection %v old told to close (Connection: %q, %d GOAWAYs)", h2MinAge/2, h, sent.Load())
		}
		time.Sleep(h2MinAge / 2)
		synctest.Wait()
		if sent.Load() != 1 || pt.tr.goaways.Load() != 1 {
			t.Fatalf("%d GOAWAYs at h2MinAge, want 1", sent.Load())
		}
		if h, _ := pt.request(mw, c, "/"); h != "close" {
			t.Fatalf("request after the GOAWAY: Connection %q, want close", h)
		}
		if pt.tr.goaways.Load() != 1 {
			t.Fatalf("%d GOAWAYs counted, want 1", pt.tr.goaways.Load())
		}
	})
}
