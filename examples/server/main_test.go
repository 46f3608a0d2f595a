package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
	drainadmin "github.com/drainhttp/drainhttp/admin"
)

// exampleTimeout bounds every wait in these tests.
const exampleTimeout = 15 * time.Second

// buildServer builds this program into a temporary directory.
func buildServer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the example; skipped in -short mode")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "server")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects the process's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// proc is a running example server.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{} // closed when Wait has returned
	err    error         // Wait's result, once exited is closed
	admin  string
}

// start runs bin with args and waits until its admin /ready answers 200.
// Cleanup kills it if it is still running.
func start(t *testing.T, bin, admin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stderr: new(syncBuffer), exited: make(chan struct{}), admin: admin}
	p.cmd = exec.Command(bin, append([]string{"-admin", admin}, args...)...)
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

	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(exampleTimeout)
	for {
		resp, err := client.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("server exited before it was ready: %v", p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after %v: last error %v", exampleTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits up to d for the process to exit and fails unless its exit
// code is 0.
func (p *proc) waitExit(d time.Duration) {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		p.t.Fatalf("server still running %v after being told to drain", d)
	}
	if p.err != nil {
		p.t.Fatalf("server exited with %v, want exit code 0", p.err)
	}
}

func get(t *testing.T, client *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

func TestServer_ServesAllProtocolsThenDrainsOnSIGTERM(t *testing.T) {
	bin := buildServer(t)
	addr, tlsAddr, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	const drainTime, drainTimeout = 300 * time.Millisecond, time.Second
	p := start(t, bin, admin, "-addr", addr, "-tls-addr", tlsAddr,
		"-drain-time", drainTime.String(), "-drain-timeout", drainTimeout.String(), "-log-level", "debug")

	h1 := &http.Client{Timeout: exampleTimeout, Transport: &http.Transport{}}
	var h2cProtos http.Protocols
	h2cProtos.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Timeout: exampleTimeout, Transport: &http.Transport{Protocols: &h2cProtos}}
	h2 := &http.Client{Timeout: exampleTimeout, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the example's certificate is self-signed
		ForceAttemptHTTP2: true,
	}}
	for _, c := range []*http.Client{h1, h2c, h2} {
		defer c.CloseIdleConnections()
	}

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		proto  string
	}{
		{"HTTP/1.1", h1, "http://" + addr + "/", "HTTP/1.1"},
		{"h2c", h2c, "http://" + addr + "/", "HTTP/2.0"},
		{"h2", h2, "https://" + tlsAddr + "/", "HTTP/2.0"},
	} {
		resp, body := get(t, tc.client, tc.url)
		if resp.StatusCode != http.StatusOK || body != "ok\n" || resp.Proto != tc.proto {
			t.Errorf("%s: %s %q over %s, want 200 \"ok\\n\" over %s", tc.name, resp.Status, body, resp.Proto, tc.proto)
		}
	}
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/sleep?d=10ms", "slept 10ms\n", http.StatusOK},
		{"/sleep?d=soon", "", http.StatusBadRequest},
		{"/sleep?d=-1s", "", http.StatusBadRequest},
		{"/sleep", "", http.StatusBadRequest},
		{"/stream?n=3&every=1ms", "line 1 of 3\nline 2 of 3\nline 3 of 3\n", http.StatusOK},
		{"/stream?n=x", "", http.StatusBadRequest},
		{"/stream?n=-1", "", http.StatusBadRequest},
		{"/stream?every=fast", "", http.StatusBadRequest},
		{"/nope", "", http.StatusNotFound},
	} {
		resp, body := get(t, h1, "http://"+addr+tc.path)
		if resp.StatusCode != tc.code || (tc.want != "" && body != tc.want) {
			t.Errorf("GET %s: %s %q, want %d %q", tc.path, resp.Status, body, tc.code, tc.want)
		}
	}

	_, body := get(t, h1, "http://"+admin+"/status")
	var st drainadmin.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	if st.State != "serving" || !st.Ready || st.Strategy != "gradual" || st.DrainTime != "300ms" ||
		st.DrainTimeout != "1s" || st.ShutdownDelay != "5s" || st.Listeners != 2 || st.Connections.Accepted < 3 ||
		st.Adaptive == nil || st.Adaptive.Probes != drainhttp.DefaultAdaptiveProbes || st.Adaptive.Quiet != "2s" {
		t.Errorf("/status before the drain:\n%s", body)
	}

	// A long stream on its own connection: the drain must end it early and
	// cleanly.
	streamResp, err := h1.Get("http://" + addr + "/stream?n=1000&every=20ms")
	if err != nil {
		t.Fatal(err)
	}
	defer streamResp.Body.Close()
	lines := bufio.NewScanner(streamResp.Body)
	if !lines.Scan() || lines.Text() != "line 1 of 1000" {
		t.Fatalf("stream starts with %q, %v", lines.Text(), lines.Err())
	}

	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The admin port keeps answering during the drain, and says not ready.
	// start's checks made this test a readiness checker: like one, it
	// goes on checking until it has seen the server fail
	// DefaultAdaptiveProbes times, which releases the shutdown delay long
	// before its 5s maximum.
	for failed := 0; failed < drainhttp.DefaultAdaptiveProbes; {
		resp, err := h1.Get("http://" + admin + "/ready")
		if err != nil {
			t.Fatalf("admin /ready during the drain: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			failed++
			continue
		}
		if time.Since(signalled) > drainTime {
			t.Fatalf("admin /ready still %s %v after SIGTERM", resp.Status, drainTime)
		}
		time.Sleep(5 * time.Millisecond)
	}

	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	if err := lines.Err(); err != nil {
		t.Errorf("stream ended with %v, want a clean end", err)
	}
	if !strings.HasPrefix(last, "stopped after ") || !strings.HasSuffix(last, "connection draining") {
		t.Errorf("stream's last line %q, want the early stop", last)
	}

	// The delay lasts until DefaultAdaptiveQuiet after the last new
	// connection, which came before SIGTERM.
	p.waitExit(drainhttp.DefaultAdaptiveQuiet + drainTime + time.Second + drainTimeout + 3*time.Second)
	logs := p.stderr.String()
	for _, want := range []string{"server: listening", addr, tlsAddr, admin, "drainhttp: drain complete",
		"drainhttp: phase", "phase=window cause=released", "server: drained, exiting"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if strings.Contains(logs, "\x1b[") {
		t.Error("logs are colored although stderr is not a terminal")
	}
}

func TestServer_AdminDrainExitsZero(t *testing.T) {
	bin := buildServer(t)
	addr, admin := freeAddr(t), freeAddr(t)
	p := start(t, bin, admin, "-addr", addr, "-drain-time", "10s", "-shutdown-delay", "10s")

	client := &http.Client{Timeout: exampleTimeout, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if resp, body := get(t, client, "http://"+addr+"/"); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Fatalf("GET /: %s %q", resp.Status, body)
	}
	post := func(path string) {
		t.Helper()
		resp, err := client.Post("http://"+admin+path, "", nil)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %s, want 202", path, resp.Status)
		}
	}
	post("/drain")
	post("/drain?strategy=immediate") // skips the shutdown delay and the window
	p.waitExit(5 * time.Second)
	if logs := p.stderr.String(); !strings.Contains(logs, "drainhttp/admin: drain requested") {
		t.Errorf("logs lack the admin drain request:\n%s", logs)
	}
}

func TestServer_BadFlagsExitNonZero(t *testing.T) {
	bin := buildServer(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-strategy", "fast"}, `unknown drain strategy "fast"`},
		{[]string{"-log-level", "loud"}, `unknown log level "loud"`},
		{[]string{"-drain-time", "-1s"}, "-drain-time -1s is negative"},
		{[]string{"-drain-timeout", "-1s"}, "-drain-timeout -1s is negative"},
		{[]string{"-shutdown-delay", "-1s"}, "-shutdown-delay -1s is negative"},
		{[]string{"-adaptive-probes", "0"}, "-adaptive-probes 0 is not positive"},
		{[]string{"-adaptive-quiet", "-1s"}, "-adaptive-quiet -1s is not positive"},
		{[]string{"-adaptive=maybe"}, `invalid boolean value "maybe" for -adaptive`},
		{[]string{"-admin-token-file", "/nonexistent/token"}, "-admin-token-file: open /nonexistent/token"},
		{[]string{"-upgrade-timeout", "-1s"}, "-upgrade-timeout -1s is negative"},
		{[]string{"-parent-shutdown-time", "-1s"}, "-parent-shutdown-time -1s is negative"},
		{[]string{"-drain-time", "soon"}, `invalid value "soon" for flag -drain-time`},
		{[]string{"-no-such-flag"}, "flag provided but not defined"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), exampleTimeout)
		out, err := exec.CommandContext(ctx, bin, tc.args...).CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%q: exited with %v, want exit code 2\n%s", tc.args, err, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%q: output lacks %q:\n%s", tc.args, tc.want, out)
		}
	}
}

func TestServer_AddressInUseExitsOne(t *testing.T) {
	bin := buildServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), exampleTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-addr", l.Addr().String(), "-admin", freeAddr(t))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exited with %v, want exit code 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "address already in use") {
		t.Errorf("output lacks the listen error:\n%s", out)
	}
}
