package drainhttp

// drainReason says why a connection was told to close. Its String is the
// key of Stats.Drained and the metrics' reason label.
type drainReason uint8

const (
	// reasonDecision: the drain decision answered true for one of its
	// requests (Envoy: downstream_cx_drain_close).
	reasonDecision drainReason = iota
	// reasonProactive: its turn in the proactive part of the drain window
	// came (idle, or HTTP/2), or it arrived during the drain and went
	// quiet.
	reasonProactive
	// reasonWindowEnd: it was still open when the drain window ended.
	reasonWindowEnd
	// reasonHealthCheck: a request arrived while the health check was
	// failed. No deadline comes with it.
	reasonHealthCheck
	// reasonMaxAge: ConnPolicy.MaxConnectionAge (Envoy:
	// downstream_cx_max_duration_reached).
	reasonMaxAge
	// reasonMaxRequests: ConnPolicy.MaxRequestsPerConnection (Envoy:
	// downstream_cx_max_requests_reached).
	reasonMaxRequests
	// reasonGoAwayChance: ConnPolicy.GoAwayChance picked it.
	reasonGoAwayChance
	// reasonShutdown: Shutdown sent it a GOAWAY.
	reasonShutdown
	// reasonClose: it was closed by Close, or by a drain cut short, before
	// being told for another reason.
	reasonClose

	numReasons = iota
)

var reasonName = [numReasons]string{
	"decision", "proactive", "window_end", "health_check",
	"max_age", "max_requests", "goaway_chance", "shutdown", "close",
}

func (r drainReason) String() string {
	if int(r) < len(reasonName) {
		return reasonName[r]
	}
	return "drainReason(?)"
}
