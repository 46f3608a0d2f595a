//go:build linux

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the example with real processes, real signals and Go
// clients under load, and follow every process an upgrade starts. They are
// Linux-only because they make the test process a child subreaper
// (prctl PR_SET_CHILD_SUBREAPER): a process whose parent exits is then
// re-parented to the test, which can collect its exit code.

const (
	// upgradeDrainTime and upgradeDrainTimeout are the example's drain
	// settings here: short, so that upgrades follow each other quickly.
	upgradeDrainTime    = 300 * time.Millisecond
	upgradeDrainTimeout = time.Second
	// upgradeShutdownDelay is the longest shutdown delay on SIGTERM (the
	// adaptive one ends sooner if it can); an upgrade has none.
	upgradeShutdownDelay = time.Second
	// listenerClose is how long a drain may take to close its listeners
	// (drainhttp.Server.Drain: "about 1 s").
	listenerClose = time.Second
	// exitMargin is how long past its drain a process may take to exit:
	// starting the drain, closing, exiting, on a loaded 2-core machine.
	exitMargin = 2 * time.Second
)

const prSetChildSubreaper = 36 // linux/prctl.h

func becomeSubreaper(t *testing.T) {
	t.Helper()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Skipf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
}

// generation is one process of the family: the first, or one started by an
// upgrade.
type generation struct {
	pid    int
	exited chan struct{} // closed once reaped
	status syscall.WaitStatus
	err    error
}

// family is the example server started by the test and every process its
// upgrades start. They all write to one stderr pipe.
type family struct {
	t       *testing.T
	pidFile string
	addr    string
	admin   string
	logs    *syncBuffer

	mu   sync.Mutex
	gens []*generation
}

// startFamily starts cmd (the example server, or a shell that execs it)
// with -pid-file and -admin set, and waits until it is ready.
func startFamily(t *testing.T, cmd *exec.Cmd, addr, admin string) (*family, *generation) {
	t.Helper()
	becomeSubreaper(t)
	f := &family{t: t, pidFile: filepath.Join(t.TempDir(), "server.pid"), addr: addr, admin: admin, logs: new(syncBuffer)}
	cmd.Args = append(cmd.Args, "-addr", addr, "-admin", admin, "-pid-file", f.pidFile)
	// Our own pipe, not an io.Writer: exec.Cmd.Wait would wait for every
	// process holding its write end, new generations included.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	// A process group of its own, which every generation inherits, so that
	// cleanup can kill them all, even those the test has not met (a child
	// still starting when a check fails).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	copied := make(chan struct{})
	go func() {
		io.Copy(f.logs, r)
		close(copied)
	}()
	first := f.reap(cmd.Process.Pid)
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGKILL) // the family, and only it
		f.mu.Lock()
		gens := f.gens
		f.mu.Unlock()
		for _, g := range gens {
			<-g.exited
		}
		r.Close()
		<-copied
		if t.Failed() {
			t.Logf("servers' stderr:\n%s", f.logs.String())
		}
	})
	f.waitPIDFile(0)
	f.waitReady()
	return f, first
}

// reap collects pid's exit status once it exits. pid must be the test's
// child by then: its parent must have exited (or be the test).
func (f *family) reap(pid int) *generation {
	g := &generation{pid: pid, exited: make(chan struct{})}
	f.mu.Lock()
	f.gens = append(f.gens, g)
	f.mu.Unlock()
	go func() {
		defer close(g.exited)
		for {
			_, err := syscall.Wait4(pid, &g.status, 0, nil)
			if err != syscall.EINTR {
				g.err = err
				return
			}
		}
	}()
	return g
}

// waitPIDFile waits until the PID file names a process other than old and
// returns its PID.
func (f *family) waitPIDFile(old int) int {
	f.t.Helper()
	deadline := time.Now().Add(exampleTimeout)
	for {
		b, err := os.ReadFile(f.pidFile)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != old {
				return pid
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the PID file still names %d after %v (read %q, %v)", old, exampleTimeout, b, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fresh is a client that opens a new connection per request: it reaches
// whichever process accepts now.
var fresh = &http.Client{Timeout: exampleTimeout, Transport: &http.Transport{DisableKeepAlives: true}}

func (f *family) waitReady() {
	f.t.Helper()
	deadline := time.Now().Add(exampleTimeout)
	for {
		resp, err := fresh.Get("http://" + f.admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("admin /ready not 200 after %v: %v", exampleTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// servedBy returns the PID that serves a request on a new connection.
func (f *family) servedBy() int {
	f.t.Helper()
	resp, err := fresh.Get("http://" + f.addr + "/")
	if err != nil {
		f.t.Fatalf("GET on a new connection: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	pid, err := strconv.Atoi(resp.Header.Get("X-Server-Pid"))
	if err != nil {
		f.t.Fatalf("X-Server-Pid %q: %v", resp.Header.Get("X-Server-Pid"), err)
	}
	return pid
}

// waitOwner waits until old has handed its listeners over, and checks that
// new connections are served by pid from then on.
func (f *family) waitOwner(old *generation, pid int) {
	f.t.Helper()
	f.waitLog(1, pidOf(old), handedOver)
	for range 5 {
		if got := f.servedBy(); got != pid {
			f.t.Fatalf("a new connection served by %d, want %d: it owns the listener", got, pid)
		}
	}
}

// waitExit waits up to d for g to exit and fails unless its exit code is 0.
func (f *family) waitExit(g *generation, d time.Duration) {
	f.t.Helper()
	select {
	case <-g.exited:
	case <-time.After(d):
		f.t.Fatalf("process %d still running %v after it was to drain", g.pid, d)
	}
	if g.err != nil {
		f.t.Fatalf("waiting for process %d: %v", g.pid, g.err)
	}
	if !g.status.Exited() || g.status.ExitStatus() != 0 {
		f.t.Fatalf("process %d ended with %v (exit code %d), want exit code 0", g.pid, g.status, g.status.ExitStatus())
	}
}

func (f *family) signal(g *generation, sig syscall.Signal) {
	f.t.Helper()
	if err := syscall.Kill(g.pid, sig); err != nil {
		f.t.Fatalf("kill -%v %d: %v", sig, g.pid, err)
	}
}

// count returns how many log lines contain every one of parts.
func (f *family) count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(f.logs.String(), "\n") {
		all := true
		for _, p := range parts {
			if strings.HasPrefix(p, "proc=") {
				p += " " // proc=12 is not proc=123
				line += " "
			}
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

func (f *family) waitLog(n int, parts ...string) {
	f.t.Helper()
	deadline := time.Now().Add(exampleTimeout)
	for f.count(parts...) < n {
		if time.Now().After(deadline) {
			f.t.Fatalf("fewer than %d log lines with %q after %v", n, parts, exampleTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// handedOver is what the old process logs once it has closed its copies
// of the listeners.
const handedOver = "drainhttp/restart: new process ready; listeners handed over, draining"

// upgrade sends SIGHUP to old, waits for the new process to own the
// listener and for old to exit 0 by itself within its drain, and returns
// the new process.
func (f *family) upgrade(old *generation) *generation {
	f.t.Helper()
	f.signal(old, syscall.SIGHUP)
	pid := f.waitPIDFile(old.pid)
	ready := time.Now()
	f.waitOwner(old, pid)
	f.waitExit(old, upgradeDrainTime+upgradeDrainTimeout+exitMargin-time.Since(ready))
	f.t.Logf("process %d handed over to %d and exited 0, %v after the new one was ready",
		old.pid, pid, time.Since(ready).Round(time.Millisecond))
	return f.reap(pid) // re-parented to the test now that old is gone
}

func pidOf(g *generation) string { return "proc=" + strconv.Itoa(g.pid) }

// load keeps Go clients busy on every protocol, and records every failure
// and which process served each request.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	ok       int
	byPID    map[string]int
	failures []string
}

const (
	// loadWorkers per protocol, each with its own keep-alive or HTTP/2
	// connections, pausing loadPause between requests; loadMaxRequests and
	// loadMaxTime bound each worker if the test forgets to stop it.
	loadWorkers     = 3
	loadPause       = 2 * time.Millisecond
	loadMaxRequests = 50_000
	loadMaxTime     = time.Minute
)

// startLoad sends requests over HTTP/1.1 and h2c to addr, and over h2 to
// tlsAddr if not empty, until finish.
func startLoad(t *testing.T, addr, tlsAddr string) *load {
	l := &load{stop: make(chan struct{}), byPID: make(map[string]int)}
	var h2cProtos http.Protocols
	h2cProtos.SetUnencryptedHTTP2(true)
	targets := []struct {
		proto string
		tr    *http.Transport
		url   string
	}{
		{"HTTP/1.1", &http.Transport{MaxIdleConnsPerHost: loadWorkers}, "http://" + addr},
		{"HTTP/2.0", &http.Transport{Protocols: &h2cProtos}, "http://" + addr},
	}
	if tlsAddr != "" {
		targets = append(targets, struct {
			proto string
			tr    *http.Transport
			url   string
		}{"HTTP/2.0", &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // self-signed, and a new one per process
			ForceAttemptHTTP2: true,
		}, "https://" + tlsAddr})
	}
	for _, tg := range targets {
		client := &http.Client{Timeout: exampleTimeout, Transport: tg.tr}
		t.Cleanup(tg.tr.CloseIdleConnections)
		for w := range loadWorkers {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				until := time.Now().Add(loadMaxTime)
				for i := 0; i < loadMaxRequests && time.Now().Before(until); i++ {
					select {
					case <-l.stop:
						return
					default:
					}
					path := "/"
					if (i+w)%10 == 0 {
						path = "/sleep?d=30ms" // in flight when a drain starts
					}
					l.do(client, tg.url+path, tg.proto)
					time.Sleep(loadPause)
				}
			}()
		}
	}
	return l
}

func (l *load) do(c *http.Client, url, proto string) {
	resp, err := c.Get(url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.failures = append(l.failures, fmt.Sprintf("GET %s: %v", url, err))
	case resp.StatusCode != http.StatusOK || resp.Proto != proto || len(body) == 0:
		l.failures = append(l.failures, fmt.Sprintf("GET %s: %s over %s, %q", url, resp.Status, resp.Proto, body))
	default:
		l.ok++
		l.byPID[resp.Header.Get("X-Server-Pid")]++
	}
}

// served returns how many requests process g has served.
func (l *load) served(g *generation) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byPID[strconv.Itoa(g.pid)]
}

// waitServed waits until g has served n more requests.
func (l *load) waitServed(t *testing.T, g *generation, n int) {
	t.Helper()
	want := l.served(g) + n
	deadline := time.Now().Add(exampleTimeout)
	for l.served(g) < want {
		if time.Now().After(deadline) {
			t.Fatalf("process %d served %d requests in %v, want %d", g.pid, l.served(g), exampleTimeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// finish stops the load and fails the test if any request failed.
func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("%d requests succeeded, by PID: %v", l.ok, l.byPID)
	if len(l.failures) > 0 {
		t.Errorf("%d requests failed, want none; first ones:\n%s", len(l.failures),
			strings.Join(l.failures[:min(len(l.failures), 10)], "\n"))
	}
}

// stopBound is how long a process may take to exit after SIGTERM, with a
// drain timeout of drainTimeout: Drain's own bound, plus exitMargin.
func stopBound(drainTimeout time.Duration) time.Duration {
	return upgradeShutdownDelay + upgradeDrainTime + listenerClose + drainTimeout + exitMargin
}

func drainArgs() []string {
	return []string{"-drain-time", upgradeDrainTime.String(), "-drain-timeout", upgradeDrainTimeout.String(),
		"-shutdown-delay", upgradeShutdownDelay.String(),
		"-parent-shutdown-time", "10s", "-upgrade-timeout", "10s"}
}

func TestServer_SIGHUPUpgradesThreeTimesWithoutLosingARequest(t *testing.T) {
	bin := buildServer(t)
	addr, tlsAddr, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	f, g := startFamily(t, exec.Command(bin, append(drainArgs(), "-tls-addr", tlsAddr)...), addr, admin)
	l := startLoad(t, addr, tlsAddr)
	l.waitServed(t, g, 50)

	gens := []*generation{g}
	for i := range 3 {
		next := f.upgrade(g)
		l.waitServed(t, next, 50)
		if f.count(pidOf(g), handedOver) != 1 ||
			f.count(pidOf(g), "server: drained, exiting") != 1 {
			t.Errorf("upgrade %d: process %d did not log its handoff and exit", i+1, g.pid)
		}
		if f.count(pidOf(next), "drainhttp/restart: listening", "from=parent") != 3 {
			t.Errorf("upgrade %d: process %d did not inherit its three listeners", i+1, next.pid)
		}
		g = next
		gens = append(gens, g)
	}
	l.finish(t)
	for _, old := range gens[:3] {
		if l.served(old) == 0 {
			t.Errorf("process %d served no request", old.pid)
		}
	}

	f.signal(g, syscall.SIGTERM)
	f.waitExit(g, stopBound(upgradeDrainTimeout))
	if n := f.count("address already in use"); n != 0 {
		t.Errorf("%d log lines say the address was in use", n)
	}
}

func TestServer_SIGHUPWhileThePreviousProcessDrainsWaitsForItToExit(t *testing.T) {
	bin := buildServer(t)
	addr, admin := freeAddr(t), freeAddr(t)
	// A request in flight keeps the first process draining until it is
	// done, long enough to send the second SIGHUP meanwhile; its deadline
	// (-drain-timeout) lets it finish.
	const slow, drainTimeout = 2 * time.Second, 5 * time.Second
	f, g0 := startFamily(t, exec.Command(bin, "-drain-time", upgradeDrainTime.String(),
		"-drain-timeout", drainTimeout.String(), "-shutdown-delay", upgradeShutdownDelay.String(),
		"-parent-shutdown-time", "10s"), addr, admin)
	l := startLoad(t, addr, "")
	inFlight := make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		c := &http.Client{Timeout: exampleTimeout, Transport: &http.Transport{}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "http://"+addr+"/sleep?d="+slow.String(), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) },
		}))
		resp, err := c.Do(req)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != http.StatusOK || resp.Header.Get("X-Server-Pid") != strconv.Itoa(g0.pid)) {
				err = fmt.Errorf("%s from process %s: %q", resp.Status, resp.Header.Get("X-Server-Pid"), body)
			}
		}
		inFlight <- err
	}()
	<-sent // to the first process: it is the only one

	f.signal(g0, syscall.SIGHUP)
	p1 := f.waitPIDFile(g0.pid)
	g1 := &generation{pid: p1} // g0's child: the test reaps it once g0 is gone
	f.waitOwner(g0, p1)
	f.signal(g1, syscall.SIGHUP)
	f.waitLog(1, pidOf(g1), "drainhttp/restart: upgrade deferred until the previous process has exited")
	f.signal(g1, syscall.SIGHUP) // coalesced with the deferred upgrade
	f.waitLog(1, pidOf(g1), "drainhttp/restart: SIGHUP ignored: an upgrade is already under way")
	select {
	case <-g0.exited:
		t.Fatal("the first process exited before its request in flight was done")
	default:
	}
	if pid := f.waitPIDFile(0); pid != p1 {
		t.Fatalf("the PID file names %d while the first process still drains, want %d", pid, p1)
	}

	if err := <-inFlight; err != nil {
		t.Fatalf("the request in flight during the upgrade: %v", err)
	}
	f.waitExit(g0, slow+exitMargin)
	g1 = f.reap(p1)
	g2 := f.upgrade(g1) // the deferred upgrade, with no new SIGHUP
	if f.count(pidOf(g1), "drainhttp/restart: previous process exited") != 1 {
		t.Error("the second process did not log the first one's exit")
	}
	if n := f.count("drainhttp/restart: upgrading: starting a new process"); n != 2 {
		t.Errorf("%d upgrades started, want 2 (the coalesced SIGHUP starts none)", n)
	}
	l.waitServed(t, g2, 50)
	l.finish(t)
	f.signal(g2, syscall.SIGTERM)
	f.waitExit(g2, stopBound(drainTimeout))
}

func TestServer_FailedUpgradesKeepTheOldProcessServing(t *testing.T) {
	bin := buildServer(t)
	addr, admin := freeAddr(t), freeAddr(t)
	behavior := filepath.Join(t.TempDir(), "child-behavior")
	cmd := exec.Command(bin, append(drainArgs(), "-upgrade-timeout", "1s")...)
	cmd.Env = append(os.Environ(), testChildEnv+"="+behavior)
	f, g := startFamily(t, cmd, addr, admin)
	l := startLoad(t, addr, "")
	l.waitServed(t, g, 50)

	const failed = "drainhttp/restart: upgrade failed; still serving"
	for i, tc := range []struct {
		name, behavior, why string
	}{
		{"crash right after start", "crash", "exited: exit status 2"},
		{"never ready", "never-ready", "timed out"},
		{"binary gone", "", "no such file or directory"},
	} {
		if err := os.WriteFile(behavior, []byte(tc.behavior), 0o644); err != nil {
			t.Fatal(err)
		}
		if tc.name == "binary gone" {
			if err := os.Rename(bin, bin+".moved"); err != nil {
				t.Fatal(err)
			}
		}
		f.signal(g, syscall.SIGHUP)
		f.waitLog(i+1, pidOf(g), failed)
		if tc.name == "binary gone" {
			if err := os.Rename(bin+".moved", bin); err != nil {
				t.Fatal(err)
			}
		}
		if f.count(pidOf(g), failed, tc.why) != 1 {
			t.Errorf("%s: the failure is not logged with %q", tc.name, tc.why)
		}
		if pid := f.waitPIDFile(0); pid != g.pid {
			t.Fatalf("%s: the PID file names %d, want the old process %d", tc.name, pid, g.pid)
		}
		if pid := f.servedBy(); pid != g.pid {
			t.Fatalf("%s: a new connection was served by %d, want the old process %d", tc.name, pid, g.pid)
		}
		l.waitServed(t, g, 50)
	}
	if f.count("crashing after start") != 1 || f.count("never reporting ready") != 1 {
		t.Error("the children did not misbehave as told")
	}

	// The old process can still upgrade, to a child that behaves.
	if err := os.WriteFile(behavior, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g = f.upgrade(g)
	l.waitServed(t, g, 50)
	l.finish(t)
	f.signal(g, syscall.SIGTERM)
	f.waitExit(g, stopBound(upgradeDrainTimeout))
}

func TestServer_TakesSystemdSocketsAndHandsThemOver(t *testing.T) {
	bin := buildServer(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to set LISTEN_PID: %v", err)
	}
	// systemd's socket unit: the sockets exist before the server, which
	// finds them as file descriptors 3 and 4 with LISTEN_PID set to its
	// own PID (which sh's exec keeps).
	var files []*os.File
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		ln.Close() // the server's copy is the only one left
		files = append(files, f)
		addrs = append(addrs, ln.Addr().String())
	}
	script := `export LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=http:admin; exec "$0" "$@"`
	cmd := exec.Command(sh, append([]string{"-c", script, bin}, drainArgs()...)...)
	cmd.ExtraFiles = files
	f, g := startFamily(t, cmd, addrs[0], addrs[1])
	for _, file := range files {
		file.Close()
	}
	if f.count(pidOf(g), "drainhttp/restart: listening", "from=systemd") != 2 {
		t.Fatalf("the server did not take both systemd sockets")
	}
	l := startLoad(t, f.addr, "")
	l.waitServed(t, g, 50)

	g = f.upgrade(g)
	if f.count(pidOf(g), "drainhttp/restart: listening", "from=parent") != 2 {
		t.Errorf("the new process did not inherit the systemd sockets")
	}
	if f.count("LISTEN_") != 0 {
		t.Error("a process logged about LISTEN_ variables")
	}
	l.waitServed(t, g, 50)
	l.finish(t)
	f.signal(g, syscall.SIGTERM)
	f.waitExit(g, stopBound(upgradeDrainTimeout))
}
