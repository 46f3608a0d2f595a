package drainhttp

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestIdle_RequestNetHTTPIsStillReadingIsNotCutByTheIdleClose: net/http
// reports a connection idle until it has read a whole request header, so a
// request whose first bytes it has already taken from the socket (a header
// that comes in two segments, a slow client) shows neither as active nor
// as bytes waiting in the socket. The idle close must not end that
// connection: the request is answered, with Connection: close.
func TestIdle_RequestNetHTTPIsStillReadingIsNotCutByTheIdleClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the idle close sees a half-read request only on Linux (TCP_INFO)")
	}
	var logs syncBuffer
	s := &Server{Handler: okHandler(), Strategy: Immediate, DrainTime: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ts := startServer(t, s)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(nc)
	roundTrip := func(req string) *http.Response {
		t.Helper()
		if _, err := nc.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		resp.Body.Close()
		return resp
	}
	roundTrip("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// Idle for longer than idleCloseMin, so that a drain's idle close comes
	// at once.
	time.Sleep(idleCloseMin + 100*time.Millisecond)
	if _, err := nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	c := onlyRecord(t, s)
	waitFor(t, "net/http to take the half header from the socket", func() bool {
		return !inputPending(c.nc) && receivedWithin(c.nc, time.Second)
	})
	s.StartDrain()
	waitFor(t, "the idle close to decide", func() bool {
		return strings.Contains(logs.String(), "idle close put off") || s.Stats().OpenTotal == 0
	})
	resp := roundTrip("\r\n")
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("response %d, close %v; want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
}

// onlyRecord returns the record of the one connection s has.
func onlyRecord(t *testing.T, s *Server) *conn {
	t.Helper()
	var recs []*conn
	waitFor(t, "one connection", func() bool {
		recs = s.tracker.conns.records()
		return len(recs) == 1
	})
	return recs[0]
}
