package drainhttp

import (
	"syscall"
	"time"
)

// A hijacked connection leaves net/http's tracking (golang/go#17721): no
// hook reports that its handler closed it. The tracker keeps it, closes it
// at its deadline if a drain reaches it, and meanwhile asks the socket
// itself whether it is still open.

// hijackCheckInterval is how often the tracker checks whether hijacked
// connections are still open while nobody waits for them: rarely enough
// to cost nothing next to the connections themselves, often enough that
// Stats does not show long-closed WebSockets for long.
const hijackCheckInterval = time.Second

// hijackCheckIntervalDraining is the same while a drain waits for the last
// connections, so that Drain returns soon after a handler closes the last
// hijacked one.
const hijackCheckIntervalDraining = 50 * time.Millisecond

// hijackedConn records that c has been hijacked. c.mu is held.
func (t *tracker) hijackedConn(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hijacked[c] = struct{}{}
	t.armSweepLocked()
}

// armSweepLocked schedules the next check, if there is something to check
// and none is scheduled. t.mu is held.
func (t *tracker) armSweepLocked() {
	if t.sweep != nil || len(t.hijacked) == 0 {
		return
	}
	d := hijackCheckInterval
	if t.empty != nil {
		d = hijackCheckIntervalDraining
	}
	t.sweep = t.clock.AfterFunc(d, t.sweepHijacked)
}

// sweepHijacked forgets the hijacked connections whose sockets are closed.
func (t *tracker) sweepHijacked() {
	t.mu.Lock()
	conns := make([]*conn, 0, len(t.hijacked))
	for c := range t.hijacked {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		if socketClosed(c) {
			c.forget()
		}
	}
	t.mu.Lock()
	t.sweep = nil
	t.armSweepLocked()
	t.mu.Unlock()
}

// socketClosed reports whether c's socket has been closed in this process.
// A connection whose type gives no access to its socket (no
// syscall.Conn under it) is never found closed: its deadline, or Close,
// ends its tracking.
func socketClosed(c *conn) bool {
	sc, ok := rawConn(c.nc).(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	return rc.Control(func(uintptr) {}) != nil
}

// stopSweep stops checking hijacked connections: the server is closed and
// every connection with it.
func (t *tracker) stopSweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.hijacked = make(map[*conn]struct{})
}
