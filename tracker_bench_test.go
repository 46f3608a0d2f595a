package drainhttp

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Benchmarks of the connection tracker: the cost of one ConnState
// transition, and the memory and goroutines a tracked connection adds over
// net/http while nothing drains. bench/gobench.sh runs them with the rest;
// bench/BENCHMARKS.md has the numbers.

// benchConn stands in for a socket: the tracker never does I/O on it.
type benchConn struct{ net.Conn }

func (benchConn) Close() error         { return nil }
func (benchConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }
func (benchConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }

func benchTracker(b *testing.B) *tracker {
	mgr, err := NewManager(ManagerOptions{DrainTime: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return newTracker(mgr, realClock{}, DefaultDrainTimeout, slog.New(slog.DiscardHandler), nil)
}

// BenchmarkTrackerConnState is one ConnState transition (active→idle or
// idle→active, alternately) through the Server's ConnState hook, on a
// tracked connection that is not draining: what net/http's serving
// goroutine pays twice per HTTP/1.1 request and HTTP/2 stream burst.
func BenchmarkTrackerConnState(b *testing.B) {
	states := [2]http.ConnState{http.StateActive, http.StateIdle}
	for _, p := range []Protocol{HTTP1, H2C} {
		b.Run(p.String(), func(b *testing.B) {
			t := benchTracker(b)
			c := t.add(benchConn{}, nil)
			if p != HTTP1 {
				c.setHTTP2(p, func() {})
			}
			b.Cleanup(func() { c.Close() })
			var nc net.Conn = c
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				t.connState(nc, states[i&1])
				i++
			}
		})
	}
	// Every goroutine has its own connection; they share the tracker's
	// counters, as the connections of one server do.
	b.Run("parallel", func(b *testing.B) {
		t := benchTracker(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			c := t.add(benchConn{}, nil)
			defer c.Close()
			var nc net.Conn = c
			i := 0
			for pb.Next() {
				t.connState(nc, states[i&1])
				i++
			}
		})
	})
}

// BenchmarkTrackerAddClose is a connection's whole tracking life without a
// drain: accepted (tracker.add), its ConnContext value, one request
// (new→active→idle) and its close.
func BenchmarkTrackerAddClose(b *testing.B) {
	t := benchTracker(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c := t.add(benchConn{}, nil)
		_ = t.connContext(ctx, c)
		t.connState(c, http.StateActive)
		t.connState(c, http.StateIdle)
		t.connState(c, http.StateClosed)
	}
}

// benchSettle returns the heap in use (objects and goroutine stacks), the
// number of heap objects and the number of goroutines once the process is
// quiet: three GCs empty sync.Pools (net/http's bufio pools among them),
// and the goroutine count must hold still for a while.
func benchSettle() (heap, objects uint64, goroutines int) {
	prev, still := -1, 0
	for still < 5 {
		time.Sleep(10 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == prev {
			still++
		} else {
			prev, still = n, 0
		}
	}
	for range 3 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse, ms.HeapObjects, runtime.NumGoroutine()
}

// BenchmarkTrackedConnection measures, while nothing drains, what holding a
// connection open costs, and how much of that drainhttp adds over net/http.
//
//   - tracker: trackerConns stand-in connections through the tracker alone
//     (accept, ConnContext value, one request): exactly the bytes, heap
//     objects and goroutines the tracker keeps per connection.
//   - loopback/http1 and loopback/h2c: loopbackConns idle keep-alive
//     connections, each after one request, to a real http.Server and to a
//     Server with the same handler on loopback, measured one after the
//     other in each iteration. base-B/conn and drainhttp-B/conn are the
//     whole process per connection (server and raw client side, heap and
//     stacks); added-B/conn is their difference, the per-connection cost
//     drainhttp adds, and added-goroutines/conn likewise.
func BenchmarkTrackedConnection(b *testing.B) {
	b.Run("tracker", benchTrackerMemory)
	b.Run("loopback/http1", func(b *testing.B) { benchLoopbackMemory(b, false) })
	b.Run("loopback/h2c", func(b *testing.B) { benchLoopbackMemory(b, true) })
}

const (
	trackerConns  = 10000
	loopbackConns = 2000
)

func benchTrackerMemory(b *testing.B) {
	var bytesPer, objsPer, gorPer float64
	for b.Loop() {
		t := benchTracker(b)
		conns := make([]*trackedConn, trackerConns)
		ctxs := make([]context.Context, trackerConns) // net/http keeps each connection's context
		base := context.Background()
		b0, o0, g0 := benchSettle()
		for i := range conns {
			c := t.add(benchConn{}, nil)
			ctxs[i] = t.connContext(base, c)
			t.connState(c, http.StateActive)
			t.connState(c, http.StateIdle)
			conns[i] = c
		}
		b1, o1, g1 := benchSettle()
		bytesPer = float64(int64(b1-b0)) / trackerConns
		objsPer = float64(int64(o1-o0)) / trackerConns
		gorPer = float64(g1-g0) / trackerConns
		for _, c := range conns {
			c.Close()
		}
		runtime.KeepAlive(ctxs)
	}
	b.ReportMetric(bytesPer, "B/conn")
	b.ReportMetric(objsPer, "objects/conn")
	b.ReportMetric(gorPer, "goroutines/conn")
}

func benchLoopbackMemory(b *testing.B, h2c bool) {
	// The first servers of a process pay one-off costs (runtime and
	// package state, pools, timers): run a pair unmeasured.
	loopbackCost(b, false, h2c)
	loopbackCost(b, true, h2c)
	var base, ours, baseGor, oursGor float64
	n := 0
	for b.Loop() {
		// Alternate the order, so that neither server always goes first.
		var bb, bg, ob, og float64
		if n%2 == 0 {
			bb, bg = loopbackCost(b, false, h2c)
			ob, og = loopbackCost(b, true, h2c)
		} else {
			ob, og = loopbackCost(b, true, h2c)
			bb, bg = loopbackCost(b, false, h2c)
		}
		base, ours, baseGor, oursGor = base+bb, ours+ob, baseGor+bg, oursGor+og
		n++
	}
	k := float64(n)
	b.ReportMetric(base/k, "base-B/conn")
	b.ReportMetric(ours/k, "drainhttp-B/conn")
	b.ReportMetric((ours-base)/k, "added-B/conn")
	b.ReportMetric(baseGor/k, "base-goroutines/conn")
	b.ReportMetric(oursGor/k, "drainhttp-goroutines/conn")
	b.ReportMetric((oursGor-baseGor)/k, "added-goroutines/conn")
}

// loopbackCost starts a server (net/http's, or ours if drain), holds
// loopbackConns idle connections to it, each after one request, and returns
// the process's bytes and goroutines per connection.
func loopbackCost(b *testing.B, drain, h2c bool) (bytesPer, goroutinesPer float64) {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var serve func() error
	var closeSrv func() error
	if drain {
		s := &Server{Handler: h, Protocols: &protos}
		serve, closeSrv = func() error { return s.Serve(l) }, s.Close
	} else {
		s := &http.Server{Handler: h, Protocols: &protos}
		serve, closeSrv = func() error { return s.Serve(l) }, s.Close
	}
	done := make(chan struct{})
	go func() { serve(); close(done) }()
	defer func() { closeSrv(); <-done }()

	conns := make([]net.Conn, 0, loopbackConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// One warm-up connection, so that the first connection's one-off
	// allocations are not charged to the measured ones.
	warm, err := benchDial(l.Addr().String(), h2c)
	if err != nil {
		b.Fatal(err)
	}
	conns = append(conns, warm)
	b0, _, g0 := benchSettle()
	for range loopbackConns {
		c, err := benchDial(l.Addr().String(), h2c)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	b1, _, g1 := benchSettle()
	return float64(int64(b1-b0)) / loopbackConns, float64(g1-g0) / loopbackConns
}

// benchDial opens a connection to addr and completes one GET / on it, with
// no client-side goroutine or buffer left behind: the connection is then
// idle on the server.
func benchDial(addr string, h2c bool) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if h2c {
		err = benchH2CGet(c)
	} else {
		err = benchHTTP1Get(c)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func benchHTTP1Get(c net.Conn) error {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// benchH2CGet speaks just enough HTTP/2 with prior knowledge for one GET.
func benchH2CGet(c net.Conn) error {
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		return err
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "bench"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		return err
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return err
				}
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				return nil
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				return nil
			}
		case *http2.GoAwayFrame:
			return io.ErrUnexpectedEOF
		}
	}
}
