package drainhttp

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// phaseTrace renders a server's phase changes relative to start.
func (pl *phaseLog) trace(start time.Time) []string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []string
	for _, pc := range pl.changes {
		// To 10 ms: Shutdown polls, as net/http's does, every millisecond
		// or so, with jitter.
		out = append(out, fmt.Sprintf("%v %s (%s)", pc.At.Sub(start).Round(10*time.Millisecond), pc.Phase, pc.Cause))
	}
	return out
}

// TestPhases_EachShutdownGoesThroughItsPhasesInOrder checks every phase
// transition of Drain (with a fixed delay, and cut short by DrainNow in
// the delay), DrainAfterHandoff, Shutdown and Close, with their causes and
// exact times.
func TestPhases_EachShutdownGoesThroughItsPhasesInOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		s     *Server
		run   func(s *Server)
		trace []string
	}{
		{"Drain", &Server{ShutdownDelay: 3 * time.Second, DrainTime: 10 * time.Second},
			func(s *Server) { s.Drain(context.Background()) },
			[]string{"0s not_ready (drain)", "3s window (delay)", "13s closing_listeners (window_end)",
				"13s closing_connections (listeners_closed)", "13s drained (no_connection_left)"}},
		{"DrainNow in the delay", &Server{ShutdownDelay: time.Minute, DrainTime: 10 * time.Second},
			func(s *Server) {
				go func() { time.Sleep(2 * time.Second); s.StartDrainNow() }()
				s.Drain(context.Background())
			},
			[]string{"0s not_ready (drain)", "2s window (hurried)", "2s closing_listeners (hurried)",
				"2s closing_connections (listeners_closed)", "2s drained (no_connection_left)"}},
		{"DrainAfterHandoff", &Server{DrainTime: 10 * time.Second, Strategy: Immediate},
			func(s *Server) { s.DrainAfterHandoff(context.Background()) },
			[]string{"0s window (handoff)", "2s closing_connections (empty)", "2s drained (no_connection_left)"}},
		{"Shutdown", &Server{},
			func(s *Server) { s.Shutdown(context.Background()) },
			[]string{"0s closing_listeners (shutdown)", "0s closing_connections (listeners_closed)", "0s closed (no_connection_left)"}},
		{"Close", &Server{},
			func(s *Server) { s.Close() },
			[]string{"0s closed (close)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tc.s.Handler, tc.s.Protocols = okHandler(), allProtocols()
				pl := watchPhases(tc.s)
				ps := startPipeServer(t, tc.s)
				// One idle keep-alive connection. Told to close (at its turn
				// in the first quarter of the window, at once if Immediate),
				// it closes once it has been idle for idleCloseMin.
				do(t, ps.client("http/1.1"), "GET", "/")
				start := time.Now()
				tc.run(tc.s)
				synctest.Wait()
				if got := pl.trace(start); !slices.Equal(got, tc.trace) {
					t.Errorf("phases:\n got  %q\n want %q", got, tc.trace)
				}
				st := tc.s.Status()
				if len(st.Timeline) != len(tc.trace)+1 || st.Phase != st.Timeline[len(st.Timeline)-1].Phase || st.Timeline[0].Phase != PhaseServing {
					t.Errorf("Status: phase %v, timeline %v", st.Phase, st.Timeline)
				}
				select {
				case <-tc.s.Done():
				default:
					t.Error("Done is not closed")
				}
			})
		})
	}
}

// TestPhases_LateRegistrationSeesTheCurrentPhase.
func TestPhases_LateRegistrationSeesTheCurrentPhase(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: okHandler(), ShutdownDelay: time.Minute, Protocols: allProtocols()}
		startPipeServer(t, s)
		s.StartDrain()
		var got []Phase
		cancel := s.OnPhase(func(pc PhaseChange) { got = append(got, pc.Phase) })
		s.StartDrainNow()
		synctest.Wait()
		cancel()
		s.Close()
		if !slices.Equal(got[:2], []Phase{PhaseNotReady, PhaseWindow}) {
			t.Fatalf("got %v, want not_ready at once, then window", got)
		}
	})
}
