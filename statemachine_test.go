package drainhttp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestStateMachine_RandomInterleavingsKeepTheInvariants drives a Server, in
// a synctest bubble over in-memory pipes, through random interleavings of
// connections arriving (HTTP/1.1 and h2c), requests (quick, slow, and
// hijacking), clients and handlers closing, time passing, policies firing,
// the health check, drains (Drain, DrainNow, their contexts ending),
// Shutdown and Close, under random options, and checks after every step:
//
//   - the open counts are never negative and match the live connections;
//   - every connection told to close with a deadline is gone by then;
//   - Drain returns within its documented bound;
//   - every Draining(ctx) channel is closed when its connection closes;
//   - each done callback and each shutdown hook runs exactly once;
//   - nothing outlives the server (the bubble ends with no goroutine).
//
// DRAINHTTP_SM_SEEDS and DRAINHTTP_SM_STEPS run more (CI runs the
// defaults, printed in the log). A failure names its seed.
func TestStateMachine_RandomInterleavingsKeepTheInvariants(t *testing.T) {
	seeds, steps := envInt("DRAINHTTP_SM_SEEDS", 24), envInt("DRAINHTTP_SM_STEPS", 150)
	t.Logf("state machine: %d seeds × %d steps", seeds, steps)
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runStateMachine(t, seed, steps) })
		})
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type smState struct {
	t   *testing.T
	rng *rand.Rand
	s   *Server
	ps  *pipeServer

	mu       sync.Mutex
	h1       []*smClient
	hijacked []net.Conn
	waits    []smWait // handlers that waited on Draining(ctx)

	h2         *http.Client
	clientsWG  sync.WaitGroup
	drainStart time.Time // zero until Drain is called
	drainBound time.Duration
	drainDone  chan error
	cancels    []context.CancelFunc
	dones      []*atomic.Int32 // Manager done callbacks
	hookRuns   atomic.Int32
	shutdown   bool // a drain closed the listeners or Shutdown ran: the hook must run
}

type smWait struct {
	draining <-chan struct{}
	done     <-chan struct{} // closed when the handler returned
}

type smClient struct {
	conn net.Conn
	br   *bufio.Reader
	busy atomic.Bool
	dead atomic.Bool
}

func runStateMachine(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	st := &smState{t: t, rng: rng}
	mux := http.NewServeMux()
	st.s = &Server{Handler: mux, Protocols: allProtocols(), rand: lockedRand(seed),
		DrainTime:     time.Duration(rng.IntN(8)) * time.Second,
		DrainTimeout:  time.Duration(1+rng.IntN(40)) * 100 * time.Millisecond,
		ShutdownDelay: time.Duration(rng.IntN(3)) * 500 * time.Millisecond,
	}
	if rng.IntN(2) == 0 {
		st.s.Strategy = Immediate
	}
	if rng.IntN(3) == 0 {
		st.s.ConnPolicy.MaxRequestsPerConnection = int64(1 + rng.IntN(4))
	}
	if rng.IntN(3) == 0 {
		st.s.ConnPolicy.MaxConnectionAge = time.Duration(1+rng.IntN(5)) * time.Second
		st.s.ConnPolicy.MaxConnectionAgeGrace = time.Duration(rng.IntN(3)) * time.Minute
	}
	if rng.IntN(3) == 0 {
		st.s.ConnPolicy.GoAwayChance = MaxGoAwayChance
		st.s.ConnPolicy.GoAwayChanceHTTP1 = rng.IntN(2) == 0
	}
	if rng.IntN(3) == 0 {
		st.s.ProactiveEndRate = float64(1 + rng.IntN(20))
	}
	if rng.IntN(3) == 0 {
		st.s.Adaptive = &AdaptiveShutdown{Quiet: time.Duration(1+rng.IntN(3)) * 500 * time.Millisecond}
	}
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", st.slow)
	mux.HandleFunc("/hijack", st.hijack)
	mux.Handle("/ready", st.s.ReadyHandler())
	st.s.RegisterOnShutdown(func() { st.hookRuns.Add(1) })
	t.Logf("options: drain %v %v, timeout %v, delay %v, policy %+v, rate %v, adaptive %v",
		st.s.DrainTime, st.s.Strategy, st.s.DrainTimeout, st.s.ShutdownDelay, st.s.ConnPolicy, st.s.ProactiveEndRate, st.s.Adaptive != nil)
	st.ps = startPipeServer(t, st.s)
	st.h2 = st.ps.client("h2c")

	for step := range steps {
		// The server's own shutdowns end the run's traffic: they come in
		// its last third.
		op := st.step(step >= 2*steps/3)
		synctest.Wait()
		if err := st.check(); err != nil {
			t.Fatalf("seed %d, step %d (%s): %v", seed, step, op, err)
		}
	}
	st.finish()
	synctest.Wait()
	fin := st.s.Stats()
	t.Logf("accepted %d, drained %v, forced %d, goaways %d, phase %v", fin.Accepted, fin.Drained, fin.Forced, fin.GoAways, st.s.Status().Phase)
	if err := st.check(); err != nil {
		t.Fatalf("seed %d, at the end: %v", seed, err)
	}
	for i, d := range st.dones {
		if n := d.Load(); n != 1 {
			t.Fatalf("seed %d: done callback %d ran %d times, want 1", seed, i, n)
		}
	}
	want := int32(0)
	if st.shutdown {
		want = 1
	}
	if n := st.hookRuns.Load(); n != want {
		t.Fatalf("seed %d: the shutdown hook ran %d times, want %d", seed, n, want)
	}
}

func (st *smState) slow(w http.ResponseWriter, r *http.Request) {
	d, _ := time.ParseDuration(r.URL.Query().Get("d"))
	done := make(chan struct{})
	defer close(done)
	wait := smWait{draining: Draining(r.Context()), done: done}
	st.mu.Lock()
	st.waits = append(st.waits, wait)
	st.mu.Unlock()
	select {
	case <-wait.draining:
	case <-time.After(d):
	case <-r.Context().Done():
	}
	io.WriteString(w, "ok")
}

func (st *smState) hijack(w http.ResponseWriter, r *http.Request) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	st.mu.Lock()
	st.hijacked = append(st.hijacked, c)
	st.mu.Unlock()
}

// step runs one random operation and names it; shutdowns (Drain,
// DrainNow, Shutdown, Close) only if late.
func (st *smState) step(late bool) string {
	rng := st.rng
	n := rng.IntN(100)
	if !late && n >= 80 && n < 91 {
		n = rng.IntN(80)
	}
	switch {
	case n < 12:
		if c := st.dial(); c != nil {
			return "dial"
		}
		return "dial refused"
	case n < 40:
		c := st.idleClient()
		if c == nil {
			return "no idle client"
		}
		path := "/fast"
		switch k := rng.IntN(10); {
		case k < 3:
			path = fmt.Sprintf("/slow?d=%dms", 100*rng.IntN(80))
		case k == 3:
			path = "/hijack"
		case k == 4:
			path = "/ready"
		}
		st.request(c, path)
		return "request " + path
	case n < 46:
		if c := st.idleClient(); c != nil {
			c.dead.Store(true)
			c.conn.Close()
			return "client close"
		}
		return "no client to close"
	case n < 56:
		st.clientsWG.Go(func() {
			if resp, err := st.h2.Get("http://pipe/fast"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
		return "h2c request"
	case n < 60:
		st.mu.Lock()
		defer st.mu.Unlock()
		if len(st.hijacked) > 0 {
			st.hijacked[0].Close()
			st.hijacked = st.hijacked[1:]
			return "hijacker closes"
		}
		return "nothing hijacked"
	case n < 80:
		d := time.Duration(rng.IntN(2000)) * time.Millisecond
		time.Sleep(d)
		return "sleep " + d.String()
	case n < 84:
		st.startDrain()
		return "Drain"
	case n < 86:
		if len(st.cancels) > 0 {
			st.cancels[rng.IntN(len(st.cancels))]()
			return "Drain's context ends"
		}
		return "no Drain to cancel"
	case n < 88:
		st.shutdown = true
		st.s.StartDrainNow()
		return "StartDrainNow"
	case n < 90:
		st.shutdown = true
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(3))*time.Second)
		st.clientsWG.Go(func() { defer cancel(); st.s.Shutdown(ctx) })
		return "Shutdown"
	case n < 91:
		st.s.Close()
		return "Close"
	case n < 94:
		mgr, _ := st.s.Manager()
		done := new(atomic.Int32)
		st.dones = append(st.dones, done)
		if rng.IntN(2) == 0 {
			mgr.StartDrainSequence(func() { done.Add(1) })
		} else {
			mgr.DrainNow(func() { done.Add(1) })
		}
		return "Manager drain"
	case n < 97:
		mgr, _ := st.s.Manager()
		mgr.HealthCheckFail()
		return "health check fail"
	default:
		mgr, _ := st.s.Manager()
		mgr.HealthCheckOK()
		return "health check ok"
	}
}

func (st *smState) dial() *smClient {
	if len(st.h1) > 30 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	nc, err := st.ps.l.dial(ctx, "", "")
	if err != nil {
		return nil
	}
	c := &smClient{conn: nc, br: bufio.NewReader(nc)}
	st.mu.Lock()
	st.h1 = append(st.h1, c)
	st.mu.Unlock()
	return c
}

func (st *smState) idleClient() *smClient {
	st.mu.Lock()
	defer st.mu.Unlock()
	var idle []*smClient
	for _, c := range st.h1 {
		if !c.busy.Load() && !c.dead.Load() {
			idle = append(idle, c)
		}
	}
	if len(idle) == 0 {
		return nil
	}
	return idle[st.rng.IntN(len(idle))]
}

// request sends path on c and reads the response in the background; the
// connection dies if the response says close, or fails.
func (st *smState) request(c *smClient, path string) {
	c.busy.Store(true)
	st.clientsWG.Go(func() {
		defer c.busy.Store(false)
		fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: pipe\r\n\r\n", path)
		if path == "/hijack" {
			c.dead.Store(true) // the handler has it now
			return
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			c.dead.Store(true)
			c.conn.Close()
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close {
			c.dead.Store(true)
			c.conn.Close()
		}
	})
}

func (st *smState) startDrain() {
	if st.drainStart.IsZero() {
		st.drainStart = time.Now()
		jitter := time.Duration(float64(st.s.DrainTime) * st.s.DrainTimeJitter)
		timeout := st.s.DrainTimeout
		if timeout == 0 {
			timeout = DefaultDrainTimeout
		}
		st.drainBound = st.s.ShutdownDelay + st.s.DrainTime + jitter + listenerCloseMax + timeout
		st.drainDone = make(chan error, 1)
	}
	st.shutdown = true
	ctx, cancel := context.WithCancel(context.Background())
	st.cancels = append(st.cancels, cancel)
	done := st.drainDone
	first := len(st.cancels) == 1
	st.clientsWG.Go(func() {
		err := st.s.Drain(ctx)
		if first {
			done <- err
		}
	})
}

// check tests the invariants.
func (st *smState) check() error {
	s := st.s
	stats := s.Stats()
	live := s.tracker.snapshot()
	var sum int64
	for p, byState := range stats.Open {
		for state, n := range byState {
			if n < 0 {
				return fmt.Errorf("open[%s][%s] = %d", p, state, n)
			}
			sum += n
		}
	}
	if sum != stats.OpenTotal || int(sum) != len(live) || s.tracker.openCount() != len(live) {
		return fmt.Errorf("open counts: by state %d, total %d, tracker %d, live %d", sum, stats.OpenTotal, s.tracker.openCount(), len(live))
	}
	now := time.Now()
	for _, c := range live {
		c.mu.Lock()
		d := c.d
		var at time.Time
		if d != nil && d.deadline != nil {
			at = d.deadlineAt
		}
		c.mu.Unlock()
		if !at.IsZero() && now.After(at) {
			return fmt.Errorf("a %s connection (%s) is open %v past its deadline", c.protocol(), c.drainState(), now.Sub(at))
		}
	}
	if !st.drainStart.IsZero() && now.Sub(st.drainStart) > st.drainBound {
		select {
		case <-s.Done():
		default:
			return fmt.Errorf("Drain has run %v, past its bound %v", now.Sub(st.drainStart), st.drainBound)
		}
	}
	return nil
}

// finish closes everything, and checks that Draining was closed for every
// handler still waiting when the server closed their connections.
func (st *smState) finish() {
	st.s.Close()
	synctest.Wait()
	st.mu.Lock()
	for _, w := range st.waits {
		select {
		case <-w.done:
		default:
			st.t.Fatal("a handler still waits after Close")
		}
		select {
		case <-w.draining:
		default:
			st.t.Fatal("a Draining channel is still open after its connection closed")
		}
	}
	for _, c := range st.hijacked {
		c.Close()
	}
	for _, c := range st.h1 {
		c.conn.Close()
	}
	st.mu.Unlock()
	for _, cancel := range st.cancels {
		cancel()
	}
	st.h2.CloseIdleConnections()
	st.clientsWG.Wait()
	if !st.drainStart.IsZero() {
		<-st.drainDone
	}
}
