package drainhttp

import "time"

// Closing an idle HTTP/1.1 keep-alive connection races with a request its
// client may be writing at that moment: a request written less than one
// trip before the client learns of the close is lost, and neither Go's
// client nor a proxy replays a POST. So the server closes an idle
// connection only once it has been idle clearly longer than its client
// ever leaves it between two requests; until then, a told connection ends
// with Connection: close on its next response, which races nothing.

// idleCloseMin is the shortest idleness after which a told connection is
// closed. A client with a steady rhythm (a keep-alive pool under load, a
// poller) sends again well within it; it also covers clients whose rhythm
// is not known yet (one request so far). Closing at idleness t races only
// a client whose next gap falls between t and t plus one round trip. Two
// seconds leaves clients that pause up to a second or so a margin for
// their own scheduling delays: with one second, 200 clients pausing 50 to
// 800 ms lost a few POSTs on an overloaded 2-core machine, where a sleeping
// goroutine can wake a few hundred milliseconds late; with two, none.
const idleCloseMin = 2 * time.Second

// idleGapFactor is how many times its longest gap between requests a
// connection must have been idle before it is closed. Pools reuse their
// most recently used connection (Go's Transport and nginx's upstream
// keepalive cache are last-in first-out), so a connection its client has
// left idle for twice its longest gap is one the client has stopped using.
const idleGapFactor = 2

// rhythm is what an HTTP/1.1 connection has shown of how long its client
// leaves it idle between requests. It is measured from one idle to the
// next, the gap plus the request's own time: a bound on the gap that
// costs one clock reading per request.
type rhythm struct {
	maxGap int64 // nanoseconds; the longest gap seen
}

// sawGap records d nanoseconds from one idle to the next.
func (r *rhythm) sawGap(d int64) { r.maxGap = max(r.maxGap, d) }

// quietAfter is how long the connection must have been idle before closing
// it is unlikely to race a request.
func (r *rhythm) quietAfter() time.Duration {
	return max(idleCloseMin, idleGapFactor*time.Duration(r.maxGap))
}
