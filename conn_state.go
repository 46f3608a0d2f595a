package drainhttp

import (
	"net"
	"net/http"
)

// connDrainState is where a connection is in its own drain: Envoy's
// per-connection drain state in the HTTP connection manager
// (NotDraining, Draining, Closing), plus the end of the connection.
type connDrainState uint32

const (
	// notDraining is the initial state. A connection leaves it for told
	// when a drain, a policy or the health check tells it to close.
	notDraining connDrainState = iota
	// told: the connection has been told to close. Its next HTTP/1.1
	// response carries Connection: close, or it has been (or will be,
	// once it can safely take one) sent a GOAWAY; Draining(ctx) is
	// closed. Unless the health check told it, its deadline runs. It goes
	// to closing when the server closes it: idle, or at its deadline.
	told
	// closing: the server is closing the connection. It goes to closed
	// when net/http reports it closed (or, hijacked, it is found closed).
	closing
	// closed: the connection is gone and forgotten. This is a terminal
	// state; every state can reach it directly when the peer or a handler
	// closes the connection.
	closed
)

var connDrainStateName = [...]string{
	notDraining: "not_draining",
	told:        "told",
	closing:     "closing",
	closed:      "closed",
}

func (s connDrainState) String() string {
	if int(s) < len(connDrainStateName) {
		return connDrainStateName[s]
	}
	return "connDrainState(?)"
}

// connState is the http.Server ConnState hook of the outer server: it
// follows every connection net/http reports, then calls the user's hook
// with exactly what net/http passed. HTTP/2 connections report their
// stream-driven transitions from their own server (see h2Conn.state).
func (t *tracker) connState(nc net.Conn, state http.ConnState) {
	if c := t.lookup(nc); c != nil {
		c.setState(state)
	}
	if t.userState != nil {
		t.userState(nc, state)
	}
}

// setState records a ConnState transition of c. On the request path (an
// HTTP/1.1 connection going active and idle again) it is a lookup, an
// uncontended lock and one monotonic clock reading.
func (c *conn) setState(state http.ConnState) {
	if state == http.StateClosed {
		c.forget()
		return
	}
	var firstStream *h2Conn
	c.mu.Lock()
	old := http.ConnState(c.state.Load())
	if old == state || c.drainState() == closed {
		c.mu.Unlock()
		return
	}
	c.state.Store(int32(state))
	h1 := c.protocol() == protoHTTP1
	switch state {
	case http.StateActive:
		c.actives++
		if c.d != nil && c.d.idleClose != nil {
			c.d.idleClose.Stop()
			c.d.idleClose = nil
		}
		if c.h2 != nil && c.actives == 2 {
			// The first stream: the first StateActive came from the
			// preface.
			firstStream = c.h2
		}
	case http.StateIdle:
		if h1 {
			now := c.t.monoNow()
			if c.idleSince != 0 {
				// From idle to idle: the gap the client left and the
				// time the request took, a bound on the gap.
				c.rhythm.sawGap(now - c.idleSince)
			}
			c.idleSince = now
			c.armIdleCloseLocked()
		}
	case http.StateHijacked:
		c.t.hijackedConn(c)
	}
	c.mu.Unlock()
	if firstStream != nil {
		firstStream.sawFirstStream()
	}
}
