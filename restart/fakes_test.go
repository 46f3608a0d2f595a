package restart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/cloudflare/tableflip"
	"github.com/drainhttp/drainhttp"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeUpgrader stands in for tableflip: each Upgrade call hands the test a
// channel on which it answers, as the new process would.
type fakeUpgrader struct {
	mu        sync.Mutex
	inherit   map[[2]string]net.Listener
	added     map[[2]string]net.Listener
	readies   int
	readyErr  error
	hasParent bool
	// readyAfterStop is what an Upgrade that Stop interrupts returns:
	// tableflip's "terminating", or nil for a new process that reported
	// ready just as it was being stopped.
	readyAfterStop bool

	parent   chan struct{}   // closed when the fake parent process exits
	upgrades chan chan error // one per Upgrade call
	stopped  chan struct{}
	stopOnce sync.Once
}

func newFakeUpgrader() *fakeUpgrader {
	return &fakeUpgrader{
		inherit:  make(map[[2]string]net.Listener),
		added:    make(map[[2]string]net.Listener),
		parent:   make(chan struct{}),
		upgrades: make(chan chan error),
		stopped:  make(chan struct{}),
	}
}

func (f *fakeUpgrader) inherited(network, addr string) (net.Listener, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ln := f.inherit[[2]string{network, addr}]
	delete(f.inherit, [2]string{network, addr})
	return ln, nil
}

func (f *fakeUpgrader) add(network, addr string, ln net.Listener) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added[[2]string{network, addr}] = ln
	return nil
}

func (f *fakeUpgrader) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readies++
	return f.readyErr
}

func (f *fakeUpgrader) readyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readies
}

func (f *fakeUpgrader) Upgrade() error {
	reply := make(chan error)
	select {
	case f.upgrades <- reply:
	case <-f.stopped:
		return errors.New("terminating")
	}
	select {
	case err := <-reply:
		return err
	case <-f.stopped: // tableflip kills the new process
		if f.readyAfterStop {
			return nil
		}
		return errors.New("terminating")
	}
}

func (f *fakeUpgrader) Stop() { f.stopOnce.Do(func() { close(f.stopped) }) }

func (f *fakeUpgrader) WaitForParent(ctx context.Context) error {
	select {
	case <-f.parent:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeUpgrader) HasParent() bool { return f.hasParent }

func (f *fakeUpgrader) isStopped() bool {
	select {
	case <-f.stopped:
		return true
	default:
		return false
	}
}

// noUpgradePending fails the test if an Upgrade call is waiting.
func (f *fakeUpgrader) noUpgradePending(t *testing.T) {
	t.Helper()
	select {
	case reply := <-f.upgrades:
		t.Error("an unexpected Upgrade call")
		reply <- errors.New("unexpected")
	default:
	}
}

// pipeListener is an in-memory listener of net.Pipe connections: its
// Accept blocks durably, as testing/synctest needs.
type pipeListener struct {
	name  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func newPipeListener(name string) *pipeListener {
	return &pipeListener{name: name, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.name) }

var errRefused = errors.New("connection refused")

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	server.Close()
	client.Close()
	return nil, errRefused
}

// refuses reports whether l no longer accepts.
func (l *pipeListener) refuses() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// client returns an HTTP client whose connections l accepts.
func (l *pipeListener) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return l.dial(ctx) },
	}}
}

// logBuffer collects a JSON slog handler's records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logged returns the records with message msg.
func (b *logBuffer) logged(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(b.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			recs = append(recs, rec)
		}
	}
	return recs
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// restartTest is a Restarter on a fake upgrader, with in-memory listeners
// and fake signals.
type restartTest struct {
	t     *testing.T
	r     *Restarter
	fu    *fakeUpgrader
	logs  *logBuffer
	sigc  chan chan<- os.Signal
	mu    sync.Mutex
	pipes map[string]*pipeListener // made by env.listen, by address
}

func newRestartTest(t *testing.T, fu *fakeUpgrader, opts Options) *restartTest {
	t.Helper()
	rt := &restartTest{t: t, fu: fu, logs: new(logBuffer), sigc: make(chan chan<- os.Signal, 1),
		pipes: make(map[string]*pipeListener)}
	opts.Logger = rt.logs.logger()
	r, err := newRestarter(opts, env{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return nil },
		listen: func(_, addr string) (net.Listener, error) {
			l := newPipeListener(addr)
			rt.mu.Lock()
			rt.pipes[addr] = l
			rt.mu.Unlock()
			return l, nil
		},
		notify:     func(c chan<- os.Signal, _ ...os.Signal) { rt.sigc <- c },
		stopNotify: func(chan<- os.Signal) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	rt.r = r
	return rt
}

// listen calls Listen, and returns its listener and the pipe listener
// under it, to dial.
func (rt *restartTest) listen(addr string) (net.Listener, *pipeListener) {
	rt.t.Helper()
	ln, err := rt.r.Listen("tcp", addr)
	if err != nil {
		rt.t.Fatal(err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return ln, rt.pipes[addr]
}

// serve runs ServeUntilSignal with s.Serve for each listener, in a
// testing/synctest bubble, and returns once it is idle (so ready, if every
// listener from Listen is served) with the signal channel and where its
// result goes.
func (rt *restartTest) serve(s *drainhttp.Server, lns ...net.Listener) (chan<- os.Signal, <-chan error) {
	var fs []func() error
	for _, ln := range lns {
		fs = append(fs, func() error { return s.Serve(ln) })
	}
	return rt.serveFuncs(s, fs...)
}

func (rt *restartTest) serveFuncs(s *drainhttp.Server, fs ...func() error) (chan<- os.Signal, <-chan error) {
	ret := make(chan error, 1)
	go func() { ret <- rt.r.ServeUntilSignal(s, fs...) }()
	sig := <-rt.sigc
	synctest.Wait() // serving, and ready if every listener is served
	return sig, ret
}

// logged returns the records with message msg.
func (rt *restartTest) logged(msg string) []map[string]any {
	rt.t.Helper()
	return rt.logs.logged(rt.t, msg)
}

func okHandler(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

func getOK(t *testing.T, c *http.Client) {
	t.Helper()
	resp, err := c.Get("http://test/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET: %s %q", resp.Status, body)
	}
}

// stillServing fails the test if ServeUntilSignal has returned.
func stillServing(t *testing.T, ret <-chan error, while string) {
	t.Helper()
	select {
	case err := <-ret:
		t.Fatalf("ServeUntilSignal returned %v %s", err, while)
	default:
	}
}
