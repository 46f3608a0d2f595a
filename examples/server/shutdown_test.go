//go:build unix

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
)

// startUnprobed runs bin with args, -addr and -admin on free addresses and
// a PID file, and waits for the PID file, which the server writes once it
// serves and handles signals. Unlike start, it never requests /ready: that
// would make the test a readiness checker that the adaptive shutdown
// delay waits for.
func startUnprobed(t *testing.T, bin string, args ...string) (p *proc, addr string) {
	t.Helper()
	addr = freeAddr(t)
	pidFile := filepath.Join(t.TempDir(), "server.pid")
	p = &proc{t: t, stderr: new(syncBuffer), exited: make(chan struct{}), admin: freeAddr(t)}
	p.cmd = exec.Command(bin, append([]string{"-addr", addr, "-admin", p.admin, "-pid-file", pidFile}, args...)...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(exampleTimeout)
	for {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
			return p, addr
		}
		select {
		case <-p.exited:
			t.Fatalf("server exited before it was ready: %v", p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no PID file after %v", exampleTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exitAfter waits for p to exit, at most exampleTimeout, fails unless its
// exit code is 0, and returns how long after since it exited.
func (p *proc) exitAfter(since time.Time) time.Duration {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(exampleTimeout):
		p.t.Fatalf("server still running %v after SIGINT", exampleTimeout)
	}
	took := time.Since(since)
	if p.err != nil {
		p.t.Fatalf("server exited with %v after %v, want exit code 0", p.err, took)
	}
	return took
}

// TestServer_SIGINTOnAnIdleAdaptiveServerExitsWithinQuiet is Ctrl-C on the
// built example with its default flags, adaptive shutdown on: nobody
// probes it and no client is connected, so neither the shutdown delay (at
// most 5s) nor the drain window (at most 10s) has anything to wait for,
// and the process exits 0 within DefaultAdaptiveQuiet + 1s. With
// -adaptive=false the same Ctrl-C waits out the delay and the window.
func TestServer_SIGINTOnAnIdleAdaptiveServerExitsWithinQuiet(t *testing.T) {
	bin := buildServer(t)
	const quiet = drainhttp.DefaultAdaptiveQuiet
	for _, tc := range []struct {
		name     string
		args     []string
		request  bool          // one request, on a connection that closes, just before SIGINT
		min, max time.Duration // bounds on the time from SIGINT to exit
		causes   []string      // in the log, in order
	}{{
		name:   "adaptive, no client",
		max:    quiet + time.Second,
		causes: []string{"phase proc=%d phase=window cause=released", "phase proc=%d phase=closing_listeners cause=quiet"},
	}, {
		// The last connection arrived after the request started, and
		// the delay lasts until it is Quiet old.
		name:    "adaptive, a request just before",
		args:    []string{"-adaptive-quiet", "1s"},
		request: true,
		min:     time.Second,
		max:     time.Second + time.Second,
		causes:  []string{"phase proc=%d phase=window cause=released", "phase proc=%d phase=closing_listeners cause=quiet"},
	}, {
		name: "fixed, no client",
		args: []string{"-adaptive=false", "-shutdown-delay", "500ms", "-drain-time", "1s"},
		min:  1500 * time.Millisecond,
		// Drain's own bound: delay + window + the listener close.
		max:    1500*time.Millisecond + time.Second + time.Second,
		causes: []string{"phase proc=%d phase=window cause=delay", "phase proc=%d phase=closing_listeners cause=window_end"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, addr := startUnprobed(t, bin, tc.args...)
			since := time.Now()
			if tc.request {
				c := &http.Client{Timeout: exampleTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := c.Get("http://" + addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			signalled := time.Now()
			if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			took := p.exitAfter(signalled)
			t.Logf("exit 0 %v after SIGINT", took.Round(time.Millisecond))
			if took > tc.max {
				t.Errorf("exit %v after SIGINT, want at most %v", took, tc.max)
			}
			if sinceStart := time.Since(since); sinceStart < tc.min {
				t.Errorf("exit %v after the start of the test's traffic, want at least %v", sinceStart, tc.min)
			}
			logs := p.stderr.String()
			at := 0
			for _, c := range tc.causes {
				want := fmt.Sprintf(c, p.cmd.Process.Pid)
				i := strings.Index(logs[at:], want)
				if i < 0 {
					t.Errorf("logs lack %q after byte %d", want, at)
					break
				}
				at += i
			}
		})
	}
}
