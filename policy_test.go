package drainhttp

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestConnPolicy_Validation(t *testing.T) {
	for _, tc := range []struct {
		p     ConnPolicy
		field string
	}{
		{ConnPolicy{MaxConnectionAge: -1}, "MaxConnectionAge"},
		{ConnPolicy{MaxConnectionAgeJitter: -0.1}, "MaxConnectionAgeJitter"},
		{ConnPolicy{MaxConnectionAgeJitter: 1}, "MaxConnectionAgeJitter"},
		{ConnPolicy{MaxConnectionAgeGrace: -1}, "MaxConnectionAgeGrace"},
		{ConnPolicy{MaxRequestsPerConnection: -1}, "MaxRequestsPerConnection"},
		{ConnPolicy{GoAwayChance: -0.01}, "GoAwayChance"},
		{ConnPolicy{GoAwayChance: MaxGoAwayChance + 0.001}, "GoAwayChance"},
	} {
		_, err := (&Server{ConnPolicy: tc.p}).Manager()
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: %v, want an ErrInvalidOption naming %s", tc.p, err, tc.field)
		}
		err = (&Server{}).Serve(WithPolicy(newPipeListener(), tc.p))
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("WithPolicy %+v: %v, want an ErrInvalidOption naming %s", tc.p, err, tc.field)
		}
	}
}

// blockingHandler serves /block until release is closed (or the request
// ends), and answers "ok" elsewhere.
type blockingHandler struct {
	release chan struct{}
	entered chan struct{}
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{release: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (h *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if r.URL.Path == "/block" {
		h.entered <- struct{}{}
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
	}
	io.WriteString(w, "ok")
}

// TestConnPolicy_MaxConnectionAgeWithJitterAndGrace: a connection ends at
// its jittered age; an idle HTTP/1.1 one closes once idle long enough, a
// busy HTTP/2 one gets its GOAWAY and is force-closed when its grace runs
// out.
func TestConnPolicy_MaxConnectionAgeWithJitterAndGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBlockingHandler()
		// rand 0.75 moves the age by +0.5 of the default ±10 % jitter.
		s := &Server{Handler: h, DrainTimeout: time.Hour, rand: func() float64 { return 0.75 },
			ConnPolicy: ConnPolicy{MaxConnectionAge: 10 * time.Minute, MaxConnectionAgeGrace: 30 * time.Second}}
		ps := startPipeServer(t, s)
		start := time.Now()
		if st, _, _ := do(t, ps.client("http/1.1"), "GET", "/"); st != 200 {
			t.Fatal(st)
		}
		busy := make(chan error, 1)
		go func() {
			resp, err := ps.client("h2c").Get("http://pipe/block")
			if err == nil {
				resp.Body.Close()
			}
			busy <- err
		}()
		<-h.entered
		time.Sleep(10*time.Minute + 30*time.Second - time.Nanosecond)
		synctest.Wait()
		if st := s.Stats(); st.Drained["max_age"] != 0 || st.OpenTotal != 2 || st.GoAways != 0 {
			t.Fatalf("before the jittered age of 10m30s: %+v", st)
		}
		time.Sleep(time.Nanosecond + idleCloseMin)
		synctest.Wait()
		if st := s.Stats(); st.Drained["max_age"] != 1 || st.GoAways != 1 || st.OpenTotal != 1 {
			t.Fatalf("at the age, plus idleCloseMin: max_age closes %d, goaways %d, open %d; want 1, 1, 1", st.Drained["max_age"], st.GoAways, st.OpenTotal)
		}
		time.Sleep(30*time.Second - idleCloseMin - time.Nanosecond)
		synctest.Wait()
		if s.Stats().OpenTotal != 1 {
			t.Fatal("busy connection closed before its grace ran out")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if err := <-busy; err == nil {
			t.Fatal("the busy request completed; it should have been cut at the grace")
		}
		if st := s.Stats(); st.Drained["max_age"] != 2 || st.Forced != 1 {
			t.Fatalf("max_age closes %d, forced %d; want 2 and 1", st.Drained["max_age"], st.Forced)
		}
		if d := time.Since(start); d != 10*time.Minute+30*time.Second+30*time.Second {
			t.Errorf("cut at %v", d)
		}
	})
}

func TestConnPolicy_MaxRequestsPerConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: okHandler(), ConnPolicy: ConnPolicy{MaxRequestsPerConnection: 3}}
		ps := startPipeServer(t, s)
		c := ps.client("http/1.1")
		for i := 1; i <= 6; i++ {
			_, conn, _ := do(t, c, "GET", "/")
			if want := i%3 == 0; (conn == "close") != want {
				t.Fatalf("request %d: Connection %q", i, conn)
			}
		}
		h2 := ps.client("h2c")
		for range 3 {
			do(t, h2, "GET", "/")
		}
		synctest.Wait()
		if st := s.Stats(); st.Drained["max_requests"] != 3 || st.GoAways != 1 {
			t.Fatalf("max_requests %d, goaways %d; want 3 (two HTTP/1.1, one h2c) and 1 GOAWAY", st.Drained["max_requests"], st.GoAways)
		}
	})
}

// TestConnPolicy_GoAwayChanceIsHTTP2OnlyAndMatchesItsProbability.
func TestConnPolicy_GoAwayChanceIsHTTP2OnlyAndMatchesItsProbability(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, p = 4000, 0.02
		s := &Server{Handler: okHandler(), ConnPolicy: ConnPolicy{GoAwayChance: p}}
		ps := startPipeServer(t, s)
		h1 := ps.client("http/1.1")
		for range 500 {
			if _, conn, _ := do(t, h1, "GET", "/"); conn == "close" {
				t.Fatal("GoAwayChance closed an HTTP/1.1 connection without GoAwayChanceHTTP1")
			}
		}
		h2 := ps.client("h2c")
		for range n {
			do(t, h2, "GET", "/")
		}
		synctest.Wait()
		got := float64(s.Stats().Drained["goaway_chance"])
		sigma := math.Sqrt(n * p * (1 - p))
		if math.Abs(got-n*p) > 6*sigma {
			t.Fatalf("%v GoAwayChance ends in %d requests, want %v ± %.0f", got, n, n*p, 6*sigma)
		}
	})
}

// TestConnPolicy_ProactiveEndRateSpacesEndsAndSkipsNone: at 10 per second,
// 30 idle connections are told to close 100 ms apart, none skipped.
func TestConnPolicy_ProactiveEndRateSpacesEndsAndSkipsNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: okHandler(), Strategy: Immediate, DrainTime: time.Hour, DrainTimeout: time.Hour, ProactiveEndRate: 10}
		ps := startPipeServer(t, s)
		for range 30 {
			do(t, ps.client("http/1.1"), "GET", "/")
		}
		start := time.Now()
		s.StartDrain()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		var at []time.Duration
		for _, c := range s.tracker.snapshot() {
			c.mu.Lock()
			if c.d != nil && !c.d.toldAt.IsZero() {
				at = append(at, c.d.toldAt.Sub(start))
			}
			c.mu.Unlock()
		}
		if n := s.Stats().Drained["proactive"] + uint64(len(at)); n != 30 {
			t.Fatalf("%d of 30 connections told within 5 s at 10/s", n)
		}
		slices.Sort(at)
		for i := 1; i < len(at); i++ {
			// x/time/rate computes in float64 seconds: allow a microsecond.
			if gap := at[i] - at[i-1]; (gap - 100*time.Millisecond).Abs() > time.Microsecond {
				t.Fatalf("ends %d and %d %v apart, want 100ms", i-1, i, gap)
			}
		}
	})
}

// TestConnPolicy_GoAwayChanceWithEndRateKeepsOnePendingEndPerConnection: a
// rate-limited end is booked once per connection, not once per request,
// and is cancelled when the connection closes: 100 requests on one h2c
// connection while the limiter is busy used to book 100 slots, a backlog
// of 100 s that starved every other end.
func TestConnPolicy_GoAwayChanceWithEndRateKeepsOnePendingEndPerConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: okHandler(), ProactiveEndRate: 1, rand: func() float64 { return 0 },
			ConnPolicy: ConnPolicy{GoAwayChance: MaxGoAwayChance}}
		ps := startPipeServer(t, s)
		first, second := ps.client("h2c"), ps.client("h2c")
		do(t, first, "GET", "/") // picked, and ended at once: the limiter's one token
		for range 100 {
			do(t, second, "GET", "/") // picked each time; its end waits for the limiter
		}
		time.Sleep(time.Second + h2HeadsUpFence + h2FinalGrace + time.Millisecond)
		synctest.Wait()
		if st := s.Stats(); st.GoAways != 2 {
			t.Fatalf("after 1 s at 1/s: %d GOAWAYs, want 2", st.GoAways)
		}
		// net/http closes a connection a second after its final GOAWAY
		// once its streams are done (its goAwayTimeout).
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		if st := s.Stats(); st.Drained["goaway_chance"] != 2 || st.GoAways != 2 {
			t.Fatalf("after 1 s at 1/s: %d ends, %d GOAWAYs; want 2 and 2", st.Drained["goaway_chance"], st.GoAways)
		}
		// No backlog is left: the limiter's next token comes a second
		// after the last end, not 100 s later.
		now := time.Now()
		if d := s.tracker.limiter.ReserveN(now, 1).DelayFrom(now); d > time.Second {
			t.Fatalf("the limiter is booked %v ahead", d)
		}
	})
}

// TestRetryAfter_AnswersLateRequestsOfTheDrainAndCountsThem.
func TestRetryAfter_AnswersLateRequestsOfTheDrainAndCountsThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mux := http.NewServeMux()
		s := &Server{Handler: mux, DrainTime: 100 * time.Second, Strategy: Immediate,
			RetryAfter: &RetryAfter{After: 0.5, Status: http.StatusTooManyRequests, Delay: 1500 * time.Millisecond, ExemptPaths: []string{"/healthz"}}}
		mux.Handle("/", okHandler())
		mux.Handle("/ready", s.ReadyHandler())
		ps := startPipeServer(t, s)
		s.StartDrain()
		time.Sleep(49 * time.Second)
		if st, conn, _ := do(t, ps.client("http/1.1"), "GET", "/"); st != 200 || conn != "close" {
			t.Fatalf("at 49%% of the drain: %d %q, want served with Connection: close", st, conn)
		}
		time.Sleep(time.Second)
		c := ps.client("http/1.1")
		req, _ := http.NewRequest("GET", "http://pipe/work", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" || !resp.Close {
			t.Fatalf("at 50%%: %d %v, want 429, Retry-After: 2, Connection: close", resp.StatusCode, resp.Header)
		}
		if st, _, _ := do(t, ps.client("http/1.1"), "GET", "/healthz"); st != 200 {
			t.Fatalf("exempt path at 50%%: %d", st)
		}
		if st, _, body := do(t, ps.client("http/1.1"), "GET", "/ready"); st != 503 || body != "draining\n" {
			t.Fatalf("ReadyHandler at 50%%: %d %q, want readiness (503 draining), not Retry-After", st, body)
		}
		h2 := ps.client("h2c")
		if st, _, _ := do(t, h2, "GET", "/work"); st != http.StatusTooManyRequests {
			t.Fatalf("h2c at 50%%: %d", st)
		}
		synctest.Wait()
		st := s.Stats()
		if st.Drained["decision"] < 4 || st.GoAways != 1 {
			t.Fatalf("rejected requests' connections: drained %v, goaways %d; want them told (decision) and the h2c one sent its GOAWAY", st.Drained, st.GoAways)
		}
	})
}

// TestRetryAfter_ReadyHandlerAnswersOKDuringAHandoff: after a handoff the
// address is served by the new process: readiness stays 200, RetryAfter or
// not.
func TestRetryAfter_ReadyHandlerAnswersOKDuringAHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mux := http.NewServeMux()
		s := &Server{Handler: mux, DrainTime: 100 * time.Second, Strategy: Immediate, RetryAfter: &RetryAfter{}}
		mux.Handle("/ready", s.ReadyHandler())
		ps := startPipeServer(t, s)
		c := ps.client("http/1.1")
		do(t, c, "GET", "/ready") // the connection the health checker keeps
		done := make(chan error, 1)
		go func() { done <- s.DrainAfterHandoff(context.Background()) }()
		synctest.Wait()
		if st, conn, body := do(t, c, "GET", "/ready"); st != 200 || conn != "close" || body != "ok\n" {
			t.Fatalf("ReadyHandler during a handoff: %d %q %q, want 200 ok with Connection: close", st, conn, body)
		}
		c.CloseIdleConnections()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
