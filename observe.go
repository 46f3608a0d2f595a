package drainhttp

import (
	"sync"
	"time"
)

// DrainedConn describes a connection that closed after being told to
// close: one of those counted in Stats.Drained.
type DrainedConn struct {
	// Reason is why it was told: a key of Stats.Drained.
	Reason string
	// Protocol is "http/1.1", "h2" or "h2c".
	Protocol string
	// Forced is true if the server closed it while busy (Stats.Forced).
	Forced bool
	// Draining is the time from being told to close to closed.
	Draining time.Duration
}

// OnConnDrained registers f to be called for every drained connection
// that closes from now on, in the goroutine that closes it: f must be
// cheap and must not block. drainhttp/drainprom observes its histogram of
// drain durations this way. The returned function unregisters f.
// OnConnDrained does nothing, and returns a function that does nothing, if
// the server's options are invalid, or f is nil.
func (s *Server) OnConnDrained(f func(DrainedConn)) (cancel func()) {
	if s.init() != nil || f == nil {
		return func() {}
	}
	t := s.tracker
	key := &f
	t.mu.Lock()
	if t.observers == nil {
		t.observers = make(map[*func(DrainedConn)]struct{})
	}
	t.observers[key] = struct{}{}
	t.snapshotObserversLocked()
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			delete(t.observers, key)
			t.snapshotObserversLocked()
			t.mu.Unlock()
		})
	}
}

// snapshotObserversLocked makes the list observeDrained reads. t.mu is
// held.
func (t *tracker) snapshotObserversLocked() {
	fs := make([]func(DrainedConn), 0, len(t.observers))
	for f := range t.observers {
		fs = append(fs, *f)
	}
	t.observerList.Store(&fs)
}

// observeDrained tells the observers that a drained connection has closed.
func (t *tracker) observeDrained(d DrainedConn) {
	if fs := t.observerList.Load(); fs != nil {
		for _, f := range *fs {
			f(d)
		}
	}
}
