package restart

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
)

// A process must not report ready before it serves: once it has, its
// parent stops accepting and cannot take its listeners back, so a child
// whose ServeTLS then fails on its certificate would leave nothing serving.
// net/http calls a listener's Accept only once Serve or ServeTLS has set
// up (certificates loaded, HTTP/2 configured) and entered its accept loop,
// so the listeners Listen returns note their first Accept call, and
// ServeUntilSignal reports ready once every one of them has seen one.

// listener is a listener returned by Listen. It embeds the listener as a
// field named Listener, as crypto/tls's does, so that drainhttp finds the
// socket under it (to close it without resetting its accept queue).
type listener struct {
	net.Listener
	r         *Restarter
	once      sync.Once
	closeOnce sync.Once
	closeErr  error
}

// Accept notes the first call, then accepts.
func (l *listener) Accept() (net.Conn, error) {
	l.once.Do(func() { l.r.serving.accepted(l) })
	return l.Listener.Accept()
}

// Close closes the listener once: the Server closes it when it drains, and
// the Restarter at the handoff.
func (l *listener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.Listener.Close() })
	return l.closeErr
}

// track wraps ln, returned by Listen, and counts it among the listeners
// that must be served before the process is ready.
func (r *Restarter) track(ln net.Listener) *listener {
	l := &listener{Listener: ln, r: r}
	r.mu.Lock()
	r.listeners = append(r.listeners, l)
	r.mu.Unlock()
	r.serving.add(l)
	return l
}

// servingState follows which listeners from Listen are accepted on.
type servingState struct {
	mu       sync.Mutex
	unserved map[*listener]struct{}
	asked    bool // Serving was called: close done once unserved is empty
	closed   bool
	done     chan struct{}
}

func (s *servingState) init() {
	s.unserved = make(map[*listener]struct{})
	s.done = make(chan struct{})
}

// add counts l, unless Serving's channel is closed already.
func (s *servingState) add(l *listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.unserved[l] = struct{}{}
	}
}

// accepted records l's first Accept call.
func (s *servingState) accepted(l *listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.unserved, l)
	s.closeIfServedLocked()
}

func (s *servingState) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = true
	s.closeIfServedLocked()
	return s.done
}

func (s *servingState) closeIfServedLocked() {
	if s.asked && !s.closed && len(s.unserved) == 0 {
		s.closed = true
		close(s.done)
	}
}

// addrs returns the addresses of the listeners not accepted on yet, sorted.
func (s *servingState) addrs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var as []string
	for l := range s.unserved {
		as = append(as, l.Addr().Network()+" "+l.Addr().String())
	}
	slices.Sort(as)
	return strings.Join(as, ", ")
}

// Serving returns a channel that is closed once every listener that Listen
// has returned is being served: Accept has been called on it, as net/http's
// Serve and ServeTLS do once they have set up and entered their accept
// loop. It is closed at once if Listen returned none; listeners that
// Listen returns after it is closed do not count. ServeUntilSignal waits
// for it before reporting ready; call Ready yourself only after it too.
func (r *Restarter) Serving() <-chan struct{} { return r.serving.wait() }

// Ready reports that this process is ready to serve: it closes the
// listeners that the parent passed and Listen did not ask for, and the
// systemd sockets no Listen claimed (logging a warning for each), writes
// the PID file, and tells the parent, which then stops accepting and
// drains. ServeUntilSignal calls it once every listener from Listen is
// being served (see Serving); calling it again does nothing and returns the
// first call's result. An error wraps ErrReadyFailed: the parent, if any,
// then kills this process when its UpgradeTimeout expires, so return.
func (r *Restarter) Ready() error {
	r.readyOnce.Do(func() {
		r.closeUnclaimed()
		if err := r.upg.Ready(); err != nil {
			r.readyErr = fmt.Errorf("%w: %w", ErrReadyFailed, err)
			return
		}
		r.ready.Store(true)
		r.log.Info("drainhttp/restart: ready", "pid", os.Getpid(), "pid_file", r.opts.PIDFile, "has_parent", r.upg.HasParent())
	})
	return r.readyErr
}
