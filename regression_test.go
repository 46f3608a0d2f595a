package drainhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Regression tests, one per bug found in review, each named for the
// behaviour it guards.

// TestDrain_BoundHoldsWhateverGraceAPolicyGave: MaxConnectionAgeGrace gave
// a connection a deadline that a later drain never shortened, so Drain
// outlived its documented bound by the grace. A drain that reaches a
// connection makes its deadline at most DrainTimeout away.
func TestDrain_BoundHoldsWhateverGraceAPolicyGave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBlockingHandler()
		s := &Server{Handler: h, DrainTimeout: 200 * time.Millisecond, rand: func() float64 { return 0.5 },
			ConnPolicy: ConnPolicy{MaxConnectionAge: time.Second, MaxConnectionAgeGrace: 10 * time.Minute}}
		ps := startPipeServer(t, s)
		go ps.client("h2c").Get("http://pipe/block")
		<-h.entered
		time.Sleep(1500 * time.Millisecond) // told at its age, 1 s, with a 10 min grace
		if st := s.Stats(); st.GoAways != 1 {
			t.Fatalf("max age: %d GOAWAYs", st.GoAways)
		}
		start := time.Now()
		if err := s.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > s.DrainTimeout {
			t.Fatalf("Drain took %v, more than DrainTimeout %v (the grace outlived the drain)", d, s.DrainTimeout)
		}
		if st := s.Stats(); st.Forced != 1 {
			t.Fatalf("forced %d, want 1", st.Forced)
		}
	})
}

// TestMiddleware_NestedUnderAServerCountsEachRequestOnce: the README's
// per-listener pattern, Middleware(mgr.NewChild(...)) in front of a
// handler a Server serves, ran the server's request accounting twice, so
// MaxRequestsPerConnection=4 closed after 2.
func TestMiddleware_NestedUnderAServerCountsEachRequestOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{ConnPolicy: ConnPolicy{MaxRequestsPerConnection: 4}}
		mgr, err := s.Manager()
		if err != nil {
			t.Fatal(err)
		}
		child, err := mgr.NewChild(ManagerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s2 := &Server{ConnPolicy: s.ConnPolicy, Handler: Middleware(child)(okHandler())}
		ps := startPipeServer(t, s2)
		c := ps.client("http/1.1")
		for i := 1; i <= 4; i++ {
			if _, conn, _ := do(t, c, "GET", "/"); (conn == "close") != (i == 4) {
				t.Fatalf("request %d: Connection %q; want close on the 4th only", i, conn)
			}
		}
		// The nested decision still applies: draining the child closes.
		child.DrainNow(nil)
		if _, conn, _ := do(t, c, "GET", "/"); conn != "close" {
			t.Fatalf("after the child drained: Connection %q", conn)
		}
		s.Close()
	})
}

// TestServeUntilSignal_WaitsForAConcurrentShutdownToFinish: it returned as
// soon as Serve returned, before a Shutdown called elsewhere had finished,
// so main exited and killed the requests Shutdown waited for.
func TestServeUntilSignal_WaitsForAConcurrentShutdownToFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBlockingHandler()
		s := &Server{Handler: h, notify: func(chan<- os.Signal, ...os.Signal) {}}
		l := newPipeListener()
		returned := make(chan error, 1)
		go func() { returned <- s.ServeUntilSignal(func() error { return s.Serve(l) }) }()
		var p http.Protocols
		p.SetHTTP1(true)
		c := &http.Client{Transport: &http.Transport{Protocols: &p, DialContext: l.dial}}
		got := make(chan string, 1)
		go func() {
			resp, err := c.Get("http://pipe/block")
			if err != nil {
				got <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- string(b)
		}()
		<-h.entered
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(context.Background()) }()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case err := <-returned:
			t.Fatalf("ServeUntilSignal returned (%v) while Shutdown still waited for a request", err)
		default:
		}
		close(h.release)
		if b := <-got; b != "ok" {
			t.Fatalf("the request got %q", b)
		}
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
		if err := <-returned; err != nil {
			t.Fatal(err)
		}
	})
}

// TestManager_HealthCheckFailLeavesNoDeadlineBehind: HealthCheckFail gave
// every connection that sent a request a hard deadline, which outlived a
// HealthCheckOK a second later and cut long-lived streams 5 s on. Now a
// failed health check tells connections to close with no deadline.
func TestManager_HealthCheckFailLeavesNoDeadlineBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBlockingHandler()
		s := &Server{Handler: h}
		ps := startPipeServer(t, s)
		mgr, _ := s.Manager()
		c := ps.client("h2c")
		stream := make(chan string, 1)
		go func() {
			resp, err := c.Get("http://pipe/block")
			if err != nil {
				stream <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			stream <- string(b)
		}()
		<-h.entered
		mgr.HealthCheckFail()
		if _, _, body := do(t, c, "GET", "/"); body != "ok" {
			t.Fatal(body)
		}
		synctest.Wait()
		if st := s.Stats(); st.GoAways != 1 {
			t.Fatalf("%d GOAWAYs while the health check failed, want 1", st.GoAways)
		}
		time.Sleep(time.Second)
		mgr.HealthCheckOK()
		time.Sleep(10 * DefaultDrainTimeout)
		synctest.Wait()
		close(h.release)
		if b := <-stream; b != "ok" {
			t.Fatalf("the long-lived stream got %q, want it to finish", b)
		}
		synctest.Wait()
		if st := s.Stats(); st.Forced != 0 || st.Drained["health_check"] != 1 {
			t.Fatalf("forced %d, drained %v; want 0 forced, 1 health_check", st.Forced, st.Drained)
		}
		if st, conn, _ := do(t, ps.client("http/1.1"), "GET", "/"); st != 200 || conn == "close" {
			t.Fatalf("after HealthCheckOK: %d %q, want served and kept alive", st, conn)
		}
	})
}

// TestDraining_ClosesWhenCloseEndsAConnectionNeverTold: closing a
// connection that had not been told to close (Close, a drain cut short)
// never closed its Draining(ctx) channel.
func TestDraining_ClosesWhenCloseEndsAConnectionNeverTold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		woke := make(chan struct{})
		s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-Draining(r.Context()):
				close(woke)
			case <-time.After(time.Hour):
			}
		})}
		ps := startPipeServer(t, s)
		go ps.client("http/1.1").Get("http://pipe/")
		synctest.Wait()
		s.Close()
		synctest.Wait()
		select {
		case <-woke:
		default:
			t.Fatal("Draining(ctx) was not closed when Close closed the connection")
		}
	})
}

// TestServer_ShutdownHooksRunOnce: RegisterOnShutdown functions ran in
// Drain and again in Shutdown.
func TestServer_ShutdownHooksRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: okHandler(), Protocols: allProtocols()}
		var runs atomic.Int32
		s.RegisterOnShutdown(func() { runs.Add(1) })
		ps := startPipeServer(t, s)
		do(t, ps.client("http/1.1"), "GET", "/")
		if err := s.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := runs.Load(); n != 1 {
			t.Fatalf("the shutdown hook ran %d times, want 1", n)
		}
	})
}

// logRecords decodes JSON log lines.
func logRecords(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

// TestServer_LogsNoProgressAfterDrainComplete: the last "draining" line
// sometimes came after "drain complete" (3 runs in 7 with a 10 s drain,
// where the 5 s progress tick meets the end).
func TestServer_LogsNoProgressAfterDrainComplete(t *testing.T) {
	for seed := range uint64(10) {
		synctest.Test(t, func(t *testing.T) {
			var buf syncBuffer
			s := &Server{Handler: okHandler(), DrainTime: 10 * time.Second, DrainTimeout: time.Duration(seed) * time.Millisecond,
				Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
			ps := startPipeServer(t, s)
			do(t, ps.client("http/1.1"), "GET", "/")
			if err := s.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			var msgs []string
			for _, r := range logRecords(t, []byte(buf.String())) {
				msgs = append(msgs, r["msg"].(string))
			}
			done := slices.Index(msgs, "drainhttp: drain complete")
			if done < 0 || slices.Contains(msgs[done:], "drainhttp: draining") {
				t.Fatalf("log order: %q", msgs)
			}
		})
	}
}

// TestStats_DrainedHasEveryReasonFromTheStart.
func TestStats_DrainedHasEveryReasonFromTheStart(t *testing.T) {
	st := (&Server{}).Stats()
	for r := range drainReason(numReasons) {
		if _, ok := st.Drained[r.String()]; !ok {
			t.Errorf("Stats.Drained lacks %q", r)
		}
	}
	if len(st.Drained) != numReasons {
		t.Errorf("Stats.Drained has %d reasons, want %d", len(st.Drained), numReasons)
	}
}
