package drainhttp

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// h2Wire is the net.Conn that an HTTP/2 connection's own server serves
// when drainhttp may see its bytes: the plain connection (h2c) or, on Go
// 1.27 and later, the *tls.Conn. It follows the frame boundaries both
// ways, so that it can write frames of its own between the server's (the
// heads-up of a two-phase GOAWAY) and spot the client's answers (its
// SETTINGS ACK, our PING's ACK). Only the connection's own server and
// drainhttp see it: user hooks and handlers see the connection the
// listener returned.
type h2Wire struct {
	net.Conn
	hc *h2Conn // its clock, and whom to tell of the answers
	// replay is how much of the client preface, which the outer server
	// has already read from an h2c connection, is still to be read again
	// from here.
	replay int32

	fence atomic.Pointer[chan struct{}] // while set, the server's writes wait for it to close

	wmu    sync.Mutex
	wcur   frameCursor
	inject []byte // frames of ours waiting for a place between the server's
	werr   error

	rcur       frameCursor // touched only by the server's reading goroutine
	pingGot    [8]byte
	pingN      int32
	settingsOK atomic.Bool // the client has acknowledged our SETTINGS: hc.arm is called
	pingWanted atomic.Bool // a heads-up PING is waiting for its ACK: hc.pingAcked is called
}

// wirePreface is where the client preface is when an h2Wire starts.
type wirePreface uint8

const (
	// prefaceUnread: the server reads it through the wire (TLS).
	prefaceUnread wirePreface = iota
	// prefaceReplayed: the outer server has read it (h2c), and the wire
	// gives it to the server again.
	prefaceReplayed
	// prefaceConsumed: the outer server has read it (h2c), and the server
	// is told so: only frames pass through the wire.
	prefaceConsumed
)

func newH2Wire(c net.Conn, hc *h2Conn, p wirePreface) *h2Wire {
	w := &h2Wire{Conn: c, hc: hc}
	switch p {
	case prefaceUnread:
		w.rcur.skip = clientPrefaceLen
	case prefaceReplayed:
		w.replay, w.rcur.skip = clientPrefaceLen, clientPrefaceLen
	case prefaceConsumed: // the first bytes read are a frame's
	}
	return w
}

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Read reads from the client, replaying the preface first if need be.
func (w *h2Wire) Read(p []byte) (int, error) {
	var n int
	var err error
	if w.replay > 0 {
		n = copy(p, clientPreface[clientPrefaceLen-w.replay:])
		w.replay -= int32(n)
	} else {
		n, err = w.Conn.Read(p)
	}
	w.rcur.advance(p[:n], w.sawFrame)
	return n, err
}

// sawFrame watches the client's frames for the two answers we wait for.
func (w *h2Wire) sawFrame(hdr *[9]byte, chunk []byte, done bool) {
	if hdr[4]&flagAck == 0 {
		return
	}
	switch hdr[3] {
	case frameSettings:
		if w.settingsOK.CompareAndSwap(false, true) && w.hc != nil {
			w.hc.arm()
		}
	case framePing:
		if !w.pingWanted.Load() {
			return
		}
		w.pingN += int32(copy(w.pingGot[min(int(w.pingN), len(w.pingGot)):], chunk))
		if !done {
			return
		}
		match := w.pingN == int32(len(w.pingGot)) && w.pingGot == pingPayload
		w.pingN = 0
		if match && w.pingWanted.CompareAndSwap(true, false) && w.hc != nil {
			w.hc.pingAcked()
		}
	}
}

// Write writes the server's bytes, with our frames, if any wait, put at
// the first place between two of its frames.
func (w *h2Wire) Write(p []byte) (int, error) {
	if w.fence.Load() != nil {
		return w.writeWithOurs(p)
	}
	w.wmu.Lock()
	if w.inject != nil {
		w.wmu.Unlock()
		return w.writeWithOurs(p)
	}
	w.wcur.advance(p, nil)
	n, err := w.Conn.Write(p)
	w.wmu.Unlock()
	return n, err
}

// writeWithOurs is Write when a heads-up is on its way: apart from Write's
// few lines, so that every write does not pay its stack frame (net/http
// writes from short-lived goroutines, whose first stack a large frame
// outgrows).
//
//go:noinline
func (w *h2Wire) writeWithOurs(p []byte) (int, error) {
	if fence := w.fence.Load(); fence != nil {
		<-*fence
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	k := -1
	if w.inject != nil {
		k = w.wcur.nextBetween(p)
	}
	if k < 0 {
		w.wcur.advance(p, nil)
		return w.Conn.Write(p)
	}
	n, err := w.Conn.Write(p[:k])
	w.wcur.advance(p[:n], nil)
	if err != nil {
		return n, err
	}
	if err := w.flushLocked(); err != nil {
		return n, err
	}
	m, err := w.Conn.Write(p[k:])
	w.wcur.advance(p[k:k+m], nil)
	return n + m, err
}

func (w *h2Wire) flushLocked() error {
	b := w.inject
	w.inject = nil
	if w.werr != nil {
		return w.werr
	}
	_, w.werr = w.Conn.Write(b)
	return w.werr
}

// h2HeadsUpFence is how long the server's writes pause before the heads-up
// GOAWAY goes out. Go's client fails a request whose body it cannot replay
// if a GOAWAY arrives between its choosing a connection for the request
// and opening the stream (a race inside the client: it then closes the
// body). A closed-loop client chooses a connection just after a response
// arrives, so a GOAWAY that arrives right after a response hits that race;
// with no response for a few milliseconds before it, no request is left
// half-started. Measured with 8 concurrent POST loops on one connection:
// 2 failures in 600 GOAWAYs without the pause, none in 1,750 with 5 ms.
const h2HeadsUpFence = 5 * time.Millisecond

// sendHeadsUp pauses the server's writes for h2HeadsUpFence, then writes
// the heads-up GOAWAY and PING between two of its frames. onPingAck runs
// when the PING's ACK is read: every stream the client opened before it
// saw the GOAWAY has been read (Go's server reads a connection's frames in
// order, one at a time) by then.
// It returns at once: a write of the server's in progress is not waited
// for.
func (w *h2Wire) sendHeadsUp() {
	w.pingWanted.Store(true)
	fence := make(chan struct{})
	w.fence.Store(&fence)
	w.hc.t.clock.AfterFunc(h2HeadsUpFence, func() {
		w.wmu.Lock()
		defer w.wmu.Unlock()
		w.inject = append(w.inject, goAwayHeadsUp[:]...)
		w.fence.Store(nil)
		close(fence)
		if w.wcur.between() {
			w.flushLocked()
		}
	})
}
