package drainhttp

import (
	"log"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// During a drain of a TLS server, clients abandon the spare connections
// they had opened, and net/http logs an "http: TLS handshake error ... EOF"
// line for each: thousands in a few seconds against one or two without a
// drain. So the server counts them (Stats.TLSHandshakeErrors) and, unless
// the user has set their own ErrorLog, logs a summary every
// errorSummaryInterval instead of a line each. Every other line net/http
// logs goes where it would have gone: ErrorLog, or the standard logger.

// errorSummaryInterval is how often the TLS handshake errors are summed up
// in one line: rarely enough to keep a drain's log readable, often enough
// to see a burst while it lasts.
const errorSummaryInterval = 10 * time.Second

const handshakeErrorPrefix = "http: TLS handshake error"

// errorLog is the outer server's ErrorLog.
type errorLog struct {
	s          *Server
	target     *log.Logger // the user's ErrorLog, or the standard logger
	summarize  bool        // the user has no ErrorLog: summarize handshake errors
	handshakes atomic.Uint64

	mu      sync.Mutex
	pending uint64 // handshake errors since the last summary
	last    string
	timer   Timer
}

func newErrorLog(s *Server) *errorLog {
	e := &errorLog{s: s, target: s.ErrorLog, summarize: s.ErrorLog == nil}
	if e.target == nil {
		e.target = log.Default()
	}
	return e
}

// logger returns the *log.Logger to give net/http: no prefix, no flags, so
// that Write sees net/http's own line.
func (e *errorLog) logger() *log.Logger { return log.New(e, "", 0) }

func (e *errorLog) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	if strings.HasPrefix(line, handshakeErrorPrefix) {
		e.handshakes.Add(1)
		if e.summarize {
			e.mu.Lock()
			e.pending++
			e.last = line
			if e.timer == nil {
				e.timer = e.s.mgr.opts.Clock.AfterFunc(errorSummaryInterval, e.flush)
			}
			e.mu.Unlock()
			return len(p), nil
		}
	}
	e.target.Output(2, line)
	return len(p), nil
}

// flush logs the summary of the handshake errors seen since the last one.
func (e *errorLog) flush() {
	e.mu.Lock()
	n, last := e.pending, e.last
	e.pending, e.timer = 0, nil
	e.mu.Unlock()
	if n == 0 {
		return
	}
	if e.s.Logger != nil {
		e.s.log.Warn("drainhttp: TLS handshakes failed", "count", n,
			"interval", errorSummaryInterval.String(), "last", last)
		return
	}
	e.target.Printf("%s: %d in the last %v (drainhttp counts them; last: %q)", handshakeErrorPrefix, n, errorSummaryInterval, last)
}

// stop logs what is pending now: the server is done.
func (e *errorLog) stop() {
	e.mu.Lock()
	t := e.timer
	e.mu.Unlock()
	if t != nil && t.Stop() {
		e.flush()
	}
}
