package restart

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/drainhttp/drainhttp"
)

// handOff drains s once its listening sockets belong to another process:
// the new one after a successful upgrade, or the parent that goes on
// serving when this process gives up before it is ready. s closes its
// listeners, then every other listener from Listen is closed, and s drains
// its connections (DrainAfterHandoff) until none is left, or until
// ParentShutdownTime, when it closes what is left: Envoy's parent shutdown
// sequence. Reaching the deadline is logged, not an error. closed, if not
// nil, is called once this process has stopped accepting on the sockets.
func (r *Restarter) handOff(s *drainhttp.Server, sigs <-chan os.Signal, closed func()) error {
	limit := r.opts.ParentShutdownTime
	if need := drainBound(s); need > limit {
		r.log.Warn("drainhttp/restart: ParentShutdownTime is shorter than the drain; it may be cut short",
			"parent_shutdown_time", limit.String(), "drain_bound", need.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	// The server's listeners first, so that its Serve calls return
	// http.ErrServerClosed, then the others (an admin server's).
	err := r.drain(s, sigs, func() error { return s.DrainAfterHandoff(ctx) }, func() {
		r.closeListeners()
		if closed != nil {
			closed()
		}
	})
	if errors.Is(err, context.DeadlineExceeded) {
		r.log.Warn("drainhttp/restart: parent shutdown time reached; remaining connections closed",
			"parent_shutdown_time", limit.String(), "forced", s.Stats().Forced)
		return nil
	}
	return err
}

// drainBound is how long s's drain after a handoff can last: the drain
// window with its jitter, then the last connections' deadline
// (Server.DrainAfterHandoff has no shutdown delay and closes its listeners
// at once).
func drainBound(s *drainhttp.Server) time.Duration {
	st := s.Status()
	return st.DrainTime + time.Duration(float64(st.DrainTime)*s.DrainTimeJitter) + st.DrainTimeout
}
