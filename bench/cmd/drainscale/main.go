// Command drainscale measures a gradual drain at scale, for
// bench/drain_at_scale.sh. It starts the server binary it is given
// (bench/cmd/benchserver -admin, or examples/server), opens -conns keep-alive connections to it over
// several loopback source addresses, sends a request on each, keeps most of
// them idle and some busy, then starts a gradual drain of -drain-time
// through the server's admin POST /drain and measures:
//
//   - when each connection closed, against the goal: every connection
//     closed by drain time + drain timeout + 1 s;
//   - the server's CPU seconds while connecting, while holding the
//     connections and during the drain (utime+stime from /proc and the
//     child's rusage), and the client's own;
//   - the requests of the busy connections: succeeded, failed (after Go's
//     client retried what it retries), and refused once the listeners had
//     closed (the server is gone: a load balancer would have moved on).
//
// Connection kinds (flags give their counts; idle HTTP/1.1 gets the rest):
//
//	idle-h1   one GET /, then idle until the server closes it
//	busy-h1   an http.Client with one connection, GET / every -think,
//	          reconnecting when told to close, until refused
//	stuck-h1  GET /sleep?d=10m: a handler that never finishes, which the
//	          drain timeout must cut (its request is expected to fail)
//	idle-h2c  an h2c (prior knowledge) http.Transport, one GET /, then idle
//	busy-h2c  like busy-h1 over h2c
//
// The load generator runs on the same machine as the server: their CPU
// shares the same cores.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	serverBin, serverLog string
	addr, admin          string
	conns                int
	busyH1, stuckH1      int
	idleH2C, busyH2C     int
	srcs                 int
	drainTime, drainTO   time.Duration
	hold, think          time.Duration
	dialers              int
	extraTime            time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.serverBin, "server-bin", "", "path to a server binary with examples/server's flags: examples/server, or bench/cmd/benchserver (required)")
	flag.StringVar(&cfg.serverLog, "server-log", "drainscale-server.log", "file for the server's log")
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:18081", "server's public address")
	flag.StringVar(&cfg.admin, "admin", "127.0.0.1:19901", "server's admin address")
	flag.IntVar(&cfg.conns, "conns", 10000, "connections in all")
	flag.IntVar(&cfg.busyH1, "busy-h1", 100, "busy HTTP/1.1 connections")
	flag.IntVar(&cfg.stuckH1, "stuck-h1", 20, "HTTP/1.1 connections with a request that never finishes")
	flag.IntVar(&cfg.idleH2C, "idle-h2c", 1000, "idle h2c connections")
	flag.IntVar(&cfg.busyH2C, "busy-h2c", 50, "busy h2c connections")
	flag.IntVar(&cfg.srcs, "src", 4, "loopback source addresses (127.0.0.2, 127.0.0.3, ...)")
	flag.DurationVar(&cfg.drainTime, "drain-time", 20*time.Second, "drain window T (server -drain-time)")
	flag.DurationVar(&cfg.drainTO, "drain-timeout", 5*time.Second, "per-connection drain timeout (server -drain-timeout)")
	flag.DurationVar(&cfg.hold, "hold", 5*time.Second, "how long to hold every connection open before the drain")
	flag.DurationVar(&cfg.think, "think", 100*time.Millisecond, "pause between a busy connection's requests")
	flag.IntVar(&cfg.dialers, "dialers", 200, "connections being opened at once")
	flag.DurationVar(&cfg.extraTime, "extra-time", 30*time.Second, "how long past T + drain timeout to wait before giving up")
	flag.Parse()
	idle := cfg.conns - cfg.busyH1 - cfg.stuckH1 - cfg.idleH2C - cfg.busyH2C
	switch {
	case cfg.serverBin == "":
		fatalf("-server-bin is required")
	case idle < 0:
		fatalf("-conns %d is less than the busy, stuck and h2c connections", cfg.conns)
	case cfg.srcs < 1 || cfg.srcs > 250:
		fatalf("-src must be in [1, 250]")
	}
	if err := run(cfg, idle); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "drainscale: "+format+"\n", args...)
	os.Exit(1)
}

// connRec is one client connection's life.
type connRec struct {
	kind   string
	opened time.Time
	closed atomic.Int64 // UnixNano; 0 while open
}

func (r *connRec) markClosed() { r.closed.CompareAndSwap(0, time.Now().UnixNano()) }

// watchedConn records when its connection ends: the first failed Read (the
// server closed it) or Close.
type watchedConn struct {
	net.Conn
	rec *connRec
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.rec.markClosed()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.rec.markClosed()
	return c.Conn.Close()
}

type bench struct {
	cfg  config
	srcs []net.IP
	next atomic.Uint64

	mu    sync.Mutex
	conns []*connRec

	drainStarted atomic.Bool
	stop         chan struct{} // closed when the server has exited

	ok, failed, refused, stuckCut, stuckOther atomic.Int64

	failMu   sync.Mutex
	failures map[string]*failure // by kind and error text
}

type failure struct {
	n           int
	first, last time.Time
}

func (b *bench) dial(ctx context.Context, kind string) (net.Conn, error) {
	src := b.srcs[b.next.Add(1)%uint64(len(b.srcs))]
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", b.cfg.addr)
	if err != nil {
		return nil, err
	}
	rec := &connRec{kind: kind, opened: time.Now()}
	b.mu.Lock()
	b.conns = append(b.conns, rec)
	b.mu.Unlock()
	return &watchedConn{Conn: c, rec: rec}, nil
}

func (b *bench) fail(kind string, err error) {
	b.failed.Add(1)
	msg := err.Error()
	if prefix, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(prefix, "on a ") {
		msg = prefix + ": " + rest[strings.LastIndex(rest, ": ")+2:]
	} else if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	now := time.Now()
	b.failMu.Lock()
	defer b.failMu.Unlock()
	key := kind + ": " + msg
	f := b.failures[key]
	if f == nil {
		f = &failure{first: now}
		b.failures[key] = f
	}
	f.n++
	f.last = now
}

// rawGet opens a connection of kind and sends GET path on it; for "/" it
// also reads the response. It returns the connection and its reader.
func (b *bench) rawGet(kind, path string, wait bool) (net.Conn, *bufio.Reader, error) {
	c, err := b.dial(context.Background(), kind)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: drainscale\r\n\r\n", path); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 512)
	if wait {
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		if err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	c.SetDeadline(time.Time{})
	return c, br, nil
}

// idleH1 holds an idle HTTP/1.1 connection until the server closes it.
func (b *bench) idleH1(ready func(error)) {
	c, br, err := b.rawGet("idle-h1", "/", true)
	ready(err)
	if err != nil {
		return
	}
	io.Copy(io.Discard, br) // until the server closes it
	c.Close()
}

// stuckH1 sends a request that never finishes and waits for the server to
// cut it.
func (b *bench) stuckH1(ready func(error)) {
	c, br, err := b.rawGet("stuck-h1", "/sleep?d=10m", false)
	ready(err)
	if err != nil {
		return
	}
	_, err = http.ReadResponse(br, nil)
	if err != nil {
		b.stuckCut.Add(1)
	} else {
		b.stuckOther.Add(1)
	}
	c.Close()
}

func (b *bench) transport(kind string, h2c bool) *http.Transport {
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return b.dial(ctx, kind) },
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	return tr
}

// get sends GET / with c. A failure says whether the request went out on a
// new connection or a reused one.
func (b *bench) get(c *http.Client) error {
	var reused, got bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { got, reused = true, i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+b.cfg.addr+"/", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		switch {
		case !got:
			return err
		case reused:
			return fmt.Errorf("on a reused connection: %w", err)
		default:
			return fmt.Errorf("on a new connection: %w", err)
		}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return err
}

// idleH2C holds an idle h2c connection, after one request, until it ends.
func (b *bench) idleH2C(ready func(error)) {
	tr := b.transport("idle-h2c", true)
	err := b.get(&http.Client{Transport: tr, Timeout: 30 * time.Second})
	ready(err)
	<-b.stop
	tr.CloseIdleConnections()
}

// busy sends a request every -think on its one connection (reconnecting
// when the server ends it) until the server refuses new connections or
// exits.
func (b *bench) busy(kind string, h2c bool, ready func(error)) {
	tr := b.transport(kind, h2c)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	err := b.get(c)
	ready(err)
	if err != nil {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		// ±50 % jitter, so that the connections do not move in step.
		t.Reset(time.Duration(float64(b.cfg.think) * (0.5 + rand.Float64())))
		select {
		case <-t.C:
		case <-b.stop:
			return
		}
		err := b.get(c)
		switch {
		case err == nil:
			b.ok.Add(1)
		case isDialError(err) && b.drainStarted.Load():
			b.refused.Add(1) // the listeners are closed: stop, like a client that moves on
			return
		default:
			b.fail(kind, err)
		}
	}
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// serverCPU returns a process's user+system CPU time from /proc/PID/stat.
func serverCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the command: state is [0], utime [11], stime [12], in
	// USER_HZ ticks (100 per second on Linux).
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// serverRSS returns a process's resident memory in bytes.
func serverRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type status struct {
	State         string     `json:"state"`
	ShutdownDelay string     `json:"shutdown_delay"`
	Started       *time.Time `json:"started"` // the drain window's start; nil before
	Connections   struct {
		Accepted  uint64            `json:"accepted"`
		OpenTotal int64             `json:"open_total"`
		Drained   map[string]uint64 `json:"drained"`
		Forced    uint64            `json:"forced"`
		GoAways   uint64            `json:"goaways"`
	} `json:"connections"`
}

var adminClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}

func getStatus(admin string) (status, error) {
	var st status
	resp, err := adminClient.Get("http://" + admin + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func run(cfg config, idleH1 int) error {
	b := &bench{cfg: cfg, stop: make(chan struct{}), failures: map[string]*failure{}}
	for i := range cfg.srcs {
		b.srcs = append(b.srcs, net.IPv4(127, 0, 0, byte(2+i)))
	}
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if need := uint64(cfg.conns + 1000); rl.Cur < need {
		return fmt.Errorf("open files limit %d is below the %d needed: raise ulimit -n", rl.Cur, need)
	}

	// The server.
	logf, err := os.Create(cfg.serverLog)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-addr", cfg.addr, "-admin", cfg.admin, "-drain-time", cfg.drainTime.String(),
		"-drain-timeout", cfg.drainTO.String(), "-strategy", "gradual", "-log-level", "info"}
	cmd := exec.Command(cfg.serverBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	var exitedAt time.Time
	go func() { cmd.Wait(); exitedAt = time.Now(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid
	for i := 0; ; i++ {
		if _, err := getStatus(cfg.admin); err == nil {
			break
		}
		if i == 100 {
			return fmt.Errorf("server did not answer on %s; see %s", cfg.admin, cfg.serverLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("drainscale: %d connections: %d idle http/1.1, %d busy http/1.1 (a request every %v ±50%%), %d stuck http/1.1, %d idle h2c, %d busy h2c; from %d source addresses\n",
		cfg.conns, idleH1, cfg.busyH1, cfg.think, cfg.stuckH1, cfg.idleH2C, cfg.busyH2C, cfg.srcs)
	fmt.Printf("server: %s %s\n", cfg.serverBin, strings.Join(args, " "))
	rss0, cpu0, self0 := serverRSS(pid), serverCPU(pid), selfCPU()

	// Connect.
	start := time.Now()
	var setupErrs atomic.Int64
	var firstErr atomic.Value
	var ready sync.WaitGroup
	sem := make(chan struct{}, cfg.dialers)
	var all sync.WaitGroup
	launch := func(n int, f func(ready func(error))) {
		for range n {
			ready.Add(1)
			all.Add(1)
			sem <- struct{}{}
			go func() {
				defer all.Done()
				once := sync.OnceFunc(func() { <-sem; ready.Done() })
				f(func(err error) {
					if err != nil {
						setupErrs.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					once()
				})
			}()
		}
	}
	launch(idleH1, b.idleH1)
	launch(cfg.stuckH1, b.stuckH1)
	launch(cfg.idleH2C, b.idleH2C)
	launch(cfg.busyH1, func(r func(error)) { b.busy("busy-h1", false, r) })
	launch(cfg.busyH2C, func(r func(error)) { b.busy("busy-h2c", true, r) })
	ready.Wait()
	setup := time.Since(start)
	if n := setupErrs.Load(); n > 0 {
		return fmt.Errorf("%d connections failed to set up, first: %v", n, firstErr.Load())
	}
	time.Sleep(200 * time.Millisecond) // let the last responses' ConnState settle
	st, err := getStatus(cfg.admin)
	if err != nil {
		return err
	}
	rss1, cpu1 := serverRSS(pid), serverCPU(pid)
	fmt.Printf("setup: %d connections open in %s; server reports %d open; server RSS %.0f MiB -> %.0f MiB (%.1f KiB per connection, whole process); server CPU %s\n",
		cfg.conns, secs(setup), st.Connections.OpenTotal, float64(rss0)/(1<<20), float64(rss1)/(1<<20),
		float64(rss1-rss0)/float64(cfg.conns)/1024, secs(cpu1-cpu0))

	// Hold.
	time.Sleep(cfg.hold)
	cpu2 := serverCPU(pid)
	okHold := b.ok.Load()
	fmt.Printf("hold: %s with every connection open: server CPU %s (%.0f%% of one core), %d busy requests ok, %d failed\n",
		secs(cfg.hold), secs(cpu2-cpu1), 100*(cpu2-cpu1).Seconds()/cfg.hold.Seconds(), okHold, b.failed.Load())
	failedHold := b.failed.Load()

	// Drain.
	b.mu.Lock()
	originals := slices.Clone(b.conns)
	b.mu.Unlock()
	t0 := time.Now()
	b.drainStarted.Store(true)
	resp, err := adminClient.Post("http://"+cfg.admin+"/drain", "", nil)
	if err != nil {
		return fmt.Errorf("POST /drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /drain: %s", resp.Status)
	}
	goal := cfg.drainTime + cfg.drainTO + time.Second
	fmt.Printf("drain: POST /drain at t=0 (gradual, T=%v, drain timeout %v); goal: every connection closed by the window's start + T + drain timeout + 1s (the window starts after the server's shutdown delay, if any)\n",
		cfg.drainTime, cfg.drainTO)
	var windowAt time.Duration = -1

	// Follow the server's status until it exits.
	var lastState string
	var lastSt status
	var zeroOpenAt time.Duration = -1
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(cfg.drainTime + cfg.drainTO + cfg.extraTime)
	cpuSamples := []time.Duration{}
	lastCPUSample := time.Now()
	cpuAtT0 := serverCPU(pid)
follow:
	for {
		select {
		case <-exited:
			break follow
		case <-giveUp:
			fmt.Printf("  t=%s: giving up, killing the server\n", secs(time.Since(t0)))
			cmd.Process.Kill()
			<-exited
			break follow
		case <-tick.C:
			if time.Since(lastCPUSample) >= time.Second {
				cpuSamples = append(cpuSamples, serverCPU(pid))
				lastCPUSample = time.Now()
			}
			st, err := getStatus(cfg.admin)
			if err != nil {
				continue // the admin server is shutting down with the rest
			}
			lastSt = st
			if st.Started != nil && windowAt < 0 {
				windowAt = max(st.Started.Sub(t0), 0)
				fmt.Printf("  t=%s: the drain window started at t=%s (server's shutdown delay option: %s)\n", secs(time.Since(t0)), secs(windowAt), st.ShutdownDelay)
			}
			if st.State != lastState {
				fmt.Printf("  t=%s: server state %q, %d connections open\n", secs(time.Since(t0)), st.State, st.Connections.OpenTotal)
				lastState = st.State
			}
			if st.Connections.OpenTotal == 0 && zeroOpenAt < 0 {
				zeroOpenAt = time.Since(t0)
			}
		}
	}
	close(b.stop)
	var ru *syscall.Rusage
	if cmd.ProcessState != nil {
		ru, _ = cmd.ProcessState.SysUsage().(*syscall.Rusage)
	}
	waitAll := make(chan struct{})
	go func() { all.Wait(); close(waitAll) }()
	select {
	case <-waitAll:
	case <-time.After(10 * time.Second):
		fmt.Println("  (some client goroutines were still running 10s after the server exited)")
	}

	// Report.
	fmt.Printf("  t=%s: server process exited (%s)\n", secs(exitedAt.Sub(t0)), cmd.ProcessState)
	if zeroOpenAt >= 0 {
		fmt.Printf("  server's /status first showed 0 open connections at t=%s (polled every 250ms)\n", secs(zeroOpenAt))
	}
	c := lastSt.Connections
	fmt.Printf("  server counters at its last /status: accepted %d, drained %v, forced %d, goaways %d\n",
		c.Accepted, c.Drained, c.Forced, c.GoAways)

	b.mu.Lock()
	everything := slices.Clone(b.conns)
	b.mu.Unlock()
	type q struct {
		n, open int
		closes  []time.Duration
	}
	byKind := map[string]*q{}
	var kinds []string
	var lastOrig, lastAny time.Duration
	openOrig := 0
	closeOf := func(r *connRec) (time.Duration, bool) {
		ns := r.closed.Load()
		if ns == 0 {
			return 0, false
		}
		return time.Unix(0, ns).Sub(t0), true
	}
	for _, r := range originals {
		k := byKind[r.kind]
		if k == nil {
			k = &q{}
			byKind[r.kind] = k
			kinds = append(kinds, r.kind)
		}
		k.n++
		d, ok := closeOf(r)
		if !ok {
			k.open++
			openOrig++
			continue
		}
		k.closes = append(k.closes, d)
		lastOrig = max(lastOrig, d)
	}
	reconnects := 0
	for _, r := range everything {
		d, ok := closeOf(r)
		if ok {
			lastAny = max(lastAny, d)
		}
		if !r.opened.Before(t0) {
			reconnects++
		}
	}
	slices.Sort(kinds)
	fmt.Printf("  close times of the %d connections open at t=0 (client side, from t=0):\n", len(originals))
	fmt.Printf("    %-9s %6s %8s %8s %8s %8s %8s\n", "kind", "conns", "first", "median", "p99", "last", "open")
	pct := func(s []time.Duration, p float64) string {
		if len(s) == 0 {
			return "-"
		}
		return secs(s[min(len(s)-1, int(p*float64(len(s))))])
	}
	for _, kind := range kinds {
		k := byKind[kind]
		slices.Sort(k.closes)
		fmt.Printf("    %-9s %6d %8s %8s %8s %8s %8d\n", kind, k.n, pct(k.closes, 0), pct(k.closes, 0.5), pct(k.closes, 0.99), pct(k.closes, 1), k.open)
	}
	fmt.Printf("  connections opened during the drain (busy clients reconnecting): %d\n", reconnects)
	// Open original connections, second by second.
	var tl []string
	for s := 0; ; s++ {
		at := time.Duration(s) * time.Second
		n := 0
		for _, r := range originals {
			if d, ok := closeOf(r); !ok || d > at {
				n++
			}
		}
		tl = append(tl, fmt.Sprintf("%ds:%d", s, n))
		if n == 0 || at > lastOrig+time.Second {
			break
		}
	}
	fmt.Printf("  open at t=: %s\n", strings.Join(tl, " "))

	drainCPU := time.Duration(-1)
	if ru != nil {
		total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		drainCPU = total - cpuAtT0
		fmt.Printf("  server CPU: %s during the drain (t=0 to exit), %s for its whole life (user %s, system %s)\n",
			secs(drainCPU), secs(total), secs(time.Duration(ru.Utime.Nano())), secs(time.Duration(ru.Stime.Nano())))
		// What serving the busy traffic alone would have cost over the
		// same time, at the rate measured while holding.
		steady := time.Duration(float64(cpu2-cpu1) / cfg.hold.Seconds() * exitedAt.Sub(t0).Seconds())
		fmt.Printf("  server CPU above the hold phase's rate over the same %s: %s\n", secs(exitedAt.Sub(t0)), secs(drainCPU-steady))
	}
	var perSec []string
	prev := cpuAtT0
	for _, c := range cpuSamples {
		perSec = append(perSec, fmt.Sprintf("%.2f", (c-prev).Seconds()))
		prev = c
	}
	fmt.Printf("  server CPU seconds per ~1s of the drain: %s\n", strings.Join(perSec, " "))
	fmt.Printf("  client (load generator) CPU for the whole run: %s\n", secs(selfCPU()-self0))
	fmt.Printf("  busy requests from t=0: %d ok, %d failed; %d clients stopped when refused after the listeners closed\n",
		b.ok.Load()-okHold, b.failed.Load()-failedHold, b.refused.Load())
	b.failMu.Lock()
	for k, f := range b.failures {
		fmt.Printf("    failed: %d x %s (t=%s..%s)\n", f.n, k, secs(f.first.Sub(t0)), secs(f.last.Sub(t0)))
	}
	b.failMu.Unlock()
	fmt.Printf("  stuck requests cut by their drain timeout (expected): %d of %d (%d ended otherwise)\n",
		b.stuckCut.Load(), cfg.stuckH1, b.stuckOther.Load())

	if windowAt > 0 {
		goal += windowAt
	}
	verdict := "MET"
	if openOrig > 0 || lastAny > goal {
		verdict = "MISSED"
	}
	fmt.Printf("result: last connection open at t=0 closed at %s, last of any connection at %s, %d never closed; goal %s: %s\n",
		secs(lastOrig), secs(lastAny), openOrig, secs(goal), verdict)
	fmt.Printf("result: failed requests %d; server CPU during the drain %s\n", b.failed.Load(), secs(drainCPU))
	return nil
}
