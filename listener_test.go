package drainhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gatedListener holds connections in the kernel's accept queue: Accept
// waits until open is closed.
type gatedListener struct {
	net.Listener
	open chan struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	<-l.open
	return l.Listener.Accept()
}

// queuedPost dials addr and sends a POST with a body, without waiting for
// the answer.
func queuedPost(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := "a body that cannot be sent again"
	fmt.Fprintf(c, "POST /queued HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return c
}

// readStatus reads the status line of the response on c.
func readStatus(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestListener_QueuedConnectionsAreServedNotReset holds 32 connections, with
// their POSTs sent, in the kernel's accept queue when the drain closes the
// listener. Closing a listening socket resets them all; drainhttp first
// stops new connections, accepts and serves the queue, and then closes.
// Every queued POST gets its response; none is reset. Clients that keep
// connecting meanwhile are either served or refused at connect, at once,
// never reset after sending.
//
// It runs on a TCP socket, which the drain filters, and on an MPTCP one
// (net.Listen's default on Linux since Go 1.24), which it binds to a quiet
// device.
func TestListener_QueuedConnectionsAreServedNotReset(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("socket filters need Linux")
	}
	for _, mptcp := range []bool{false, true} {
		t.Run(fmt.Sprintf("mptcp=%v", mptcp), func(t *testing.T) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(mptcp)
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			testQueuedConnectionsAreServed(t, ln)
		})
	}
}

func testQueuedConnectionsAreServed(t *testing.T, ln net.Listener) {
	const queued = 32
	l := &gatedListener{Listener: ln, open: make(chan struct{})}
	addr := l.Addr().String()
	s := &Server{Handler: okHandler()}
	closing := make(chan struct{})
	s.OnPhase(func(pc PhaseChange) {
		if pc.Phase == PhaseClosingListeners {
			close(closing)
			close(l.open)
		}
	})
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	conns := make([]net.Conn, queued)
	for i := range conns {
		conns[i] = queuedPost(t, addr)
		defer conns[i].Close()
	}
	waitFor(t, "the connections to wait in the accept queue", func() bool {
		n, err := acceptQueueLen(listenerSocket(l))
		return err == nil && n == queued
	})

	// Late clients: they keep connecting until the listener is closed.
	type lateResult struct {
		served, refused int
		refusedIn       time.Duration // how long the refused dial took
	}
	lateDone := make(chan lateResult)
	var lateErrs []string
	var mu sync.Mutex
	go func() {
		var r lateResult
		<-closing
		for {
			dialStart := time.Now()
			c, err := net.DialTimeout("tcp", addr, testTimeout)
			if err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) {
					r.refused++
					r.refusedIn = time.Since(dialStart)
					lateDone <- r
					return
				}
				mu.Lock()
				lateErrs = append(lateErrs, "dial: "+err.Error())
				mu.Unlock()
				lateDone <- r
				return
			}
			fmt.Fprintf(c, "POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
			st, err := readStatus(c)
			c.Close()
			if err != nil || st != "HTTP/1.1 200 OK" {
				mu.Lock()
				lateErrs = append(lateErrs, fmt.Sprintf("late POST: %q %v", st, err))
				mu.Unlock()
				continue
			}
			r.served++
		}
	}()

	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		st, err := readStatus(c)
		if err != nil || st != "HTTP/1.1 200 OK" {
			t.Errorf("queued POST %d: %q, %v", i, st, err)
		}
	}
	late := <-lateDone
	for _, e := range lateErrs {
		t.Error(e)
	}
	t.Logf("%d queued POSTs answered; late clients: %d served, %d refused at connect after %v", queued, late.served, late.refused, late.refusedIn)
	if late.refused != 1 {
		t.Errorf("the last late client was not refused at connect")
	}
	// Bound to a quiet device, the socket refuses at once: no SYN
	// retransmit (a second) to wait for.
	if late.refusedIn > 500*time.Millisecond {
		t.Errorf("the refusal took %v", late.refusedIn)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// TestListener_PlainCloseResetsTheQueue shows what the test above guards
// against: net/http's Shutdown closes the listener at once, and the
// kernel resets every connection still in its accept queue, whose request
// was sent.
func TestListener_PlainCloseResetsTheQueue(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the accept queue's fate on close is Linux's")
	}
	l := listen(t)
	c := queuedPost(t, l.Addr().String())
	defer c.Close()
	waitFor(t, "the connection to wait in the accept queue", func() bool {
		n, err := acceptQueueLen(listenerSocket(l))
		return err == nil && n == 1
	})
	l.Close() // what http.Server.Shutdown does first
	_, err := readStatus(c)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("read after plain Shutdown: %v, want a reset", err)
	}
	t.Logf("net/http's Shutdown: the queued POST got %v", err)
}

// TestListener_SharedSocketIsNeverFiltered: a listener marked shared (a
// systemd socket) is closed at once, with no filter left on the socket
// for the next process.
func TestListener_SharedSocketIsNeverFiltered(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("socket filters need Linux")
	}
	tl := listen(t).(*net.TCPListener)
	f, err := tl.File() // the "other process": a second descriptor of the socket
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	s := &Server{Handler: okHandler()}
	served := make(chan error, 1)
	go func() { served <- s.Serve(SharedListener(tl)) }()
	waitFor(t, "serving", func() bool { return s.Stats().Listeners == 1 })
	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-served
	// The socket lives on in "the other process", unfiltered: a new
	// client connects at once.
	c, err := net.DialTimeout("tcp", other.Addr().String(), 500*time.Millisecond)
	if err != nil {
		t.Fatalf("dial the shared socket after the drain: %v", err)
	}
	c.Close()
}
