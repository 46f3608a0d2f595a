package drainhttp

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestIdle_ToldConnectionClosesOnlyWhenIdleLongerThanItsRhythm: an idle
// HTTP/1.1 connection told to close is closed only once it has been idle
// for twice its client's longest gap between requests (at least
// idleCloseMin); a client that comes back before then gets Connection:
// close on its response instead, which races nothing.
func TestIdle_ToldConnectionClosesOnlyWhenIdleLongerThanItsRhythm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: okHandler(), Strategy: Immediate, DrainTime: time.Hour, DrainTimeout: time.Hour, Protocols: allProtocols()}
		ps := startPipeServer(t, s)
		quiet, steady := ps.client("http/1.1"), ps.client("http/1.1")
		start := time.Now()
		for i := range 3 { // both: requests 2 s apart, at 0, 2 and 4 s
			do(t, quiet, "GET", "/")
			do(t, steady, "GET", "/")
			if i < 2 {
				time.Sleep(2 * time.Second)
			}
		}
		time.Sleep(500 * time.Millisecond)
		s.StartDrain() // at 4.5 s: both are told to close at once
		time.Sleep(1500 * time.Millisecond)
		// At 6 s the steady client sends again, on its open connection.
		if _, conn, _ := do(t, steady, "GET", "/"); conn != "close" {
			t.Fatalf("the steady client's response at 6 s: Connection %q, want close", conn)
		}
		// The quiet one was idle since 4 s; its longest gap is 2 s: it is
		// closed at 8 s, not before.
		time.Sleep(2*time.Second - time.Nanosecond)
		synctest.Wait()
		if n := s.Stats().OpenTotal; n != 1 {
			t.Fatalf("just before 8 s: %d connections open, want the quiet one", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n := s.Stats().OpenTotal; n != 0 {
			t.Fatalf("at 8 s (%v): %d connections open, want none", time.Since(start), n)
		}
		if st := s.Stats(); st.Forced != 0 || st.Drained["proactive"] != 2 {
			t.Fatalf("forced %d, drained %v", st.Forced, st.Drained)
		}
	})
}

// TestIdle_LateConnectionIsDrainedWhenItGoesQuiet: a connection that
// arrives during the drain is kept, and drained once idle longer than its
// rhythm, without waiting for the window's end.
func TestIdle_LateConnectionIsDrainedWhenItGoesQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: okHandler(), DrainTime: time.Hour, Protocols: allProtocols()}
		ps := startPipeServer(t, s)
		s.StartDrain()
		time.Sleep(time.Second)
		c := ps.client("http/1.1")
		do(t, c, "GET", "/") // at 1 s: late
		// One request, so no gap known: closed after idleCloseMin, 2 s.
		time.Sleep(2*time.Second - time.Nanosecond)
		synctest.Wait()
		if s.Stats().OpenTotal != 1 {
			t.Fatal("the late connection closed before it had been idle for idleCloseMin")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if st := s.Stats(); st.OpenTotal != 0 || st.Drained["proactive"] != 1 {
			t.Fatalf("open %d, drained %v; want the late connection drained proactively", st.OpenTotal, st.Drained)
		}
	})
}
