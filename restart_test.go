package drainhttp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudflare/tableflip"
)

// fakeUpgrader stands in for tableflip: each Upgrade call hands the test a
// channel on which it answers, as the new process would.
type fakeUpgrader struct {
	mu        sync.Mutex
	inherit   map[[2]string]net.Listener
	added     map[[2]string]net.Listener
	readies   int
	readyErr  error
	hasParent bool

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

func pipeClient(l *pipeListener) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return l.dial(ctx) },
	}}
}

// restartTest is a Restarter on a fake upgrader, with in-memory listeners
// and fake signals.
type restartTest struct {
	t    *testing.T
	r    *Restarter
	fu   *fakeUpgrader
	logs *logBuffer
	sigc chan chan<- os.Signal
}

func newRestartTest(t *testing.T, fu *fakeUpgrader, opts RestartOptions) *restartTest {
	t.Helper()
	rt := &restartTest{t: t, fu: fu, logs: new(logBuffer), sigc: make(chan chan<- os.Signal, 1)}
	opts.Logger = slog.New(slog.NewJSONHandler(rt.logs, nil))
	r, err := newRestarter(opts, restartEnv{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return nil },
		listen:          func(_, addr string) (net.Listener, error) { return newPipeListener(addr), nil },
		notify:          func(c chan<- os.Signal, _ ...os.Signal) { rt.sigc <- c },
		stopNotify:      func(chan<- os.Signal) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	rt.r = r
	return rt
}

func (rt *restartTest) listen(addr string) *pipeListener {
	rt.t.Helper()
	ln, err := rt.r.Listen("tcp", addr)
	if err != nil {
		rt.t.Fatal(err)
	}
	return ln.(*pipeListener)
}

// serve runs ServeUntilSignal(s, s.Serve(ln)) and returns the signal
// channel and where its result goes.
func (rt *restartTest) serve(s *Server, ln net.Listener) (chan<- os.Signal, <-chan error) {
	ret := make(chan error, 1)
	go func() { ret <- rt.r.ServeUntilSignal(s, func() error { return s.Serve(ln) }) }()
	return <-rt.sigc, ret
}

// logged returns the records with message msg.
func (rt *restartTest) logged(msg string) []map[string]any {
	rt.t.Helper()
	return find(rt.t, rt.logs.records(rt.t), msg)
}

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

func TestNewRestarter_RejectsNegativeDurations(t *testing.T) {
	for _, opts := range []RestartOptions{
		{UpgradeTimeout: -time.Second},
		{ParentShutdownTime: -time.Nanosecond},
	} {
		// Validation comes first, so the real constructor makes no
		// tableflip.Upgrader here.
		if _, err := NewRestarter(opts); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewRestarter(%+v) = %v, want ErrInvalidOption", opts, err)
		}
	}
}

func TestNewRestarter_NamesItsDefaultsAndPassesThemToTableflip(t *testing.T) {
	var got tableflip.Options
	fu := newFakeUpgrader()
	r, err := newRestarter(RestartOptions{PIDFile: "/run/x.pid"}, restartEnv{
		newUpgrader:     func(o tableflip.Options) (upgrader, error) { got = o; return fu, nil },
		activationFiles: func() []*os.File { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if got.UpgradeTimeout != DefaultUpgradeTimeout || got.PIDFile != "/run/x.pid" {
		t.Errorf("tableflip options %+v", got)
	}
	if r.opts.ParentShutdownTime != DefaultParentShutdownTime || DefaultParentShutdownTime != 2*time.Minute {
		t.Errorf("ParentShutdownTime %v, want DefaultParentShutdownTime (2m)", r.opts.ParentShutdownTime)
	}
}

func TestNewRestarter_WrapsWhyHotRestartIsUnavailable(t *testing.T) {
	_, err := newRestarter(RestartOptions{}, restartEnv{
		newUpgrader: func(tableflip.Options) (upgrader, error) {
			return nil, tableflip.ErrNotSupported
		},
	})
	if !errors.Is(err, ErrRestartUnavailable) || !errors.Is(err, tableflip.ErrNotSupported) {
		t.Fatalf("err = %v, want ErrRestartUnavailable wrapping tableflip.ErrNotSupported", err)
	}
	if !strings.HasPrefix(err.Error(), "drainhttp: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
}

func TestRestarter_SIGHUPHandsOverThenDrainsAndReturnsNil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drainTime, drainTimeout = 10 * time.Second, 5 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{ParentShutdownTime: time.Minute})
		pub, admin := rt.listen("127.0.0.1:8080"), rt.listen("127.0.0.1:9901")
		s := &Server{Handler: http.HandlerFunc(okHandler), DrainTime: drainTime, DrainTimeout: drainTimeout}
		sig, ret := rt.serve(s, pub)
		c := pipeClient(pub)
		defer c.CloseIdleConnections()
		getOK(t, c) // leaves an idle keep-alive connection
		if n := fu.readyCount(); n != 1 {
			t.Fatalf("Ready called %d times before serving, want 1", n)
		}

		sig <- syscall.SIGHUP
		reply := <-fu.upgrades
		if pub.refuses() {
			t.Fatal("the listener closed before the new process was ready")
		}
		reply <- nil // the new process is ready
		handoff := time.Now()
		synctest.Wait()
		if !pub.refuses() || !admin.refuses() {
			t.Fatalf("after the handoff: public listener closed %v, admin listener closed %v; want both",
				pub.refuses(), admin.refuses())
		}
		if s.Ready() {
			t.Error("the old process is still ready while it drains")
		}
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		// The idle connection is closed by the proactive drain, within the
		// window's first quarter; then nothing is left and nothing can come.
		if d := time.Since(handoff); d <= 0 || d > drainTime/4 {
			t.Errorf("the old process drained for %v, want until its idle connection was closed, within %v", d, drainTime/4)
		}
		if !fu.isStopped() {
			t.Error("the upgrader was not stopped")
		}
		if len(rt.logged("drainhttp: new process ready; listeners handed over, draining")) != 1 {
			t.Errorf("no handoff record:\n%s", rt.logs.buf.String())
		}
		if len(rt.logged("drainhttp: parent shutdown time reached; remaining connections closed")) != 0 {
			t.Error("the drain was cut short by the parent shutdown time")
		}
		if st := s.Stats(); st.Forced != 0 || st.OpenTotal != 0 || st.Drained["proactive"] != 1 {
			t.Errorf("stats after the handoff drain: %+v", st)
		}
	})
}

func TestRestarter_HandoffWithoutConnectionsEndsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{})
		pub := rt.listen(":8080")
		s := &Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour}
		sig, ret := rt.serve(s, pub)
		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		handoff := time.Now()
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if d := time.Since(handoff); d != 0 {
			t.Errorf("an old process without connections drained for %v, want none", d)
		}
	})
}

func TestRestarter_HandoffWaitsForInFlightRequestsThenEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const work = 20 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{ParentShutdownTime: 3 * time.Hour})
		pub := rt.listen(":8080")
		entered := make(chan struct{})
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			time.Sleep(work)
			okHandler(w, r)
		})
		s := &Server{Handler: slow, DrainTime: time.Hour, DrainTimeout: time.Hour}
		s.rand = func() float64 { return 0 } // proactive drain at the start of the window
		sig, ret := rt.serve(s, pub)
		c := pipeClient(pub)
		defer c.CloseIdleConnections()
		var resp *http.Response
		done := make(chan error, 1)
		go func() {
			var err error
			resp, err = c.Get("http://test/")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
		<-entered
		start := time.Now()
		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		// The connection, marked draining while its request ran, is
		// closed once idle for idleCloseDelay; then nothing is left.
		if d, want := time.Since(start), work+idleCloseDelay; d != want {
			t.Errorf("returned %v after the handoff, want once the request in flight was done and its connection closed (%v)", d, want)
		}
		if err := <-done; err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the request in flight: %v, %v; want 200", err, resp)
		}
	})
}

func TestRestarter_ParentShutdownTimeClosesWhatIsLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const parentShutdown = 30 * time.Second
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{ParentShutdownTime: parentShutdown})
		pub := rt.listen(":8080")
		entered := make(chan struct{})
		stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done()
		})
		s := &Server{Handler: stuck, DrainTime: time.Hour, DrainTimeout: time.Hour}
		sig, ret := rt.serve(s, pub)
		c := pipeClient(pub)
		defer c.CloseIdleConnections()
		failed := make(chan error, 1)
		go func() {
			resp, err := c.Get("http://test/")
			if err == nil {
				resp.Body.Close()
			}
			failed <- err
		}()
		<-entered

		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		handoff := time.Now()
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if d := time.Since(handoff); d != parentShutdown {
			t.Errorf("returned %v after the handoff, want ParentShutdownTime (%v)", d, parentShutdown)
		}
		if err := <-failed; err == nil {
			t.Error("the stuck request succeeded, want its connection closed")
		}
		warn := rt.logged("drainhttp: parent shutdown time reached; remaining connections closed")
		if len(warn) != 1 || warn[0]["level"] != "WARN" || warn[0]["forced"] != float64(1) {
			t.Errorf("parent shutdown records: %v", warn)
		}
		if short := rt.logged("drainhttp: ParentShutdownTime is shorter than the drain; it will be cut short"); len(short) != 1 || short[0]["drain_bound"] != "2h0m0s" {
			t.Errorf("short ParentShutdownTime records: %v", short)
		}
	})
}

func TestRestarter_FailedUpgradeIsLoggedAndTheProcessKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{})
		pub := rt.listen(":8080")
		s := &Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)
		c := pipeClient(pub)
		defer c.CloseIdleConnections()

		for _, why := range []string{"child pid=42 exited: exit status 2", "new child pid=43 timed out"} {
			sig <- syscall.SIGHUP
			(<-fu.upgrades) <- errors.New(why)
			synctest.Wait()
			getOK(t, c)
			if pub.refuses() || !s.Ready() || s.Manager().Draining() {
				t.Fatalf("after a failed upgrade (%s): listener closed %v, ready %v", why, pub.refuses(), s.Ready())
			}
		}
		failed := rt.logged("drainhttp: upgrade failed; still serving")
		if len(failed) != 2 || failed[0]["level"] != "WARN" ||
			failed[0]["err"] != "drainhttp: upgrade failed: child pid=42 exited: exit status 2" ||
			failed[1]["err"] != "drainhttp: upgrade failed: new child pid=43 timed out" {
			t.Errorf("upgrade failure records: %v", failed)
		}

		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if !fu.isStopped() {
			t.Error("the upgrader was not stopped")
		}
		if len(rt.logged("drainhttp: signal received, draining")) != 1 {
			t.Error("no record of the SIGTERM")
		}
	})
}

func TestRestarter_SIGHUPDuringAnUpgradeIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{})
		pub := rt.listen(":8080")
		s := &Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)

		sig <- syscall.SIGHUP
		reply := <-fu.upgrades
		sig <- syscall.SIGHUP
		synctest.Wait()
		fu.noUpgradePending(t)
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrUpgradeInProgress) {
			t.Errorf("Upgrade during an upgrade = %v, want ErrUpgradeInProgress", err)
		}
		if n := len(rt.logged("drainhttp: SIGHUP ignored: an upgrade is already under way")); n != 1 {
			t.Errorf("%d records of the ignored SIGHUP, want 1", n)
		}
		reply <- nil
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrRestarterStopped) {
			t.Errorf("Upgrade after the handoff = %v, want ErrRestarterStopped", err)
		}
	})
}

func TestRestarter_SIGHUPWhileThePreviousProcessDrainsWaitsForItToExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.hasParent = true
		rt := newRestartTest(t, fu, RestartOptions{})
		pub := rt.listen(":8080")
		s := &Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)
		c := pipeClient(pub)
		defer c.CloseIdleConnections()

		sig <- syscall.SIGHUP
		synctest.Wait()
		fu.noUpgradePending(t)
		if len(rt.logged("drainhttp: upgrade deferred until the previous process has exited")) != 1 {
			t.Error("no record of the deferred upgrade")
		}
		time.Sleep(time.Minute) // the parent drains on
		sig <- syscall.SIGHUP   // coalesced with the deferred one
		synctest.Wait()
		fu.noUpgradePending(t)
		getOK(t, c) // serving all along
		if len(rt.logged("drainhttp: SIGHUP ignored: an upgrade is already under way")) != 1 {
			t.Error("no record of the coalesced SIGHUP")
		}

		close(fu.parent) // the parent exits
		reply := <-fu.upgrades
		synctest.Wait()
		fu.noUpgradePending(t)
		if len(rt.logged("drainhttp: previous process exited")) != 1 {
			t.Error("no record of the parent's exit")
		}
		reply <- nil
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
	})
}

func TestRestarter_SIGTERMDuringAnUpgradeKillsTheNewProcessAndDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{})
		pub := rt.listen(":8080")
		s := &Server{Handler: http.HandlerFunc(okHandler), DrainTime: 5 * time.Second}
		sig, ret := rt.serve(s, pub)

		sig <- syscall.SIGHUP
		<-fu.upgrades // the new process starts, and is never ready
		sig <- syscall.SIGTERM
		start := time.Now()
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if !fu.isStopped() {
			t.Error("the new process was not killed (upgrader not stopped)")
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("drained for %v, want the 5s drain window of a SIGTERM", d)
		}
		if n := len(rt.logged("drainhttp: upgrade failed; still serving")); n != 0 {
			t.Errorf("%d upgrade failure records for a killed upgrade, want none", n)
		}
	})
}

func TestRestarter_DeferredUpgradeEndsWithSIGTERM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.hasParent = true // and it never exits
		rt := newRestartTest(t, fu, RestartOptions{})
		pub := rt.listen(":8080")
		s := &Server{Handler: http.HandlerFunc(okHandler)}
		sig, ret := rt.serve(s, pub)
		sig <- syscall.SIGHUP
		synctest.Wait()
		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		fu.noUpgradePending(t)
	})
}

func TestRestarter_SecondSignalHurriesTheHandoffDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{ParentShutdownTime: 3 * time.Hour})
		pub := rt.listen(":8080")
		// A long poll that ends when its connection drains, late in the
		// window's first quarter: it keeps the old process draining.
		poll := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-Draining(r.Context()):
			case <-r.Context().Done():
			}
			okHandler(w, r)
		})
		s := &Server{Handler: poll, DrainTime: time.Hour}
		s.rand = func() float64 { return 0.99 }
		sig, ret := rt.serve(s, pub)
		c := pipeClient(pub)
		defer c.CloseIdleConnections()
		polled := make(chan error, 1)
		go func() {
			resp, err := c.Get("http://test/")
			if err == nil {
				resp.Body.Close()
			}
			polled <- err
		}()
		synctest.Wait()
		sig <- syscall.SIGHUP
		(<-fu.upgrades) <- nil
		synctest.Wait()
		start := time.Now()
		sig <- syscall.SIGHUP // the new process's business now
		synctest.Wait()
		fu.noUpgradePending(t)
		time.Sleep(time.Minute)
		sig <- syscall.SIGTERM
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if d := time.Since(start); d < time.Minute || d > time.Minute+idleCloseDelay {
			t.Errorf("returned %v after the handoff, want at once after SIGTERM (1m) and the long poll's end", d)
		}
		if err := <-polled; err != nil {
			t.Errorf("the long poll: %v", err)
		}
		if len(rt.logged("drainhttp: SIGHUP ignored: this process is draining")) != 1 {
			t.Error("no record of the ignored SIGHUP")
		}
		if len(rt.logged("drainhttp: second signal, draining immediately")) != 1 {
			t.Error("no record of the hurried drain")
		}
	})
}

func TestRestarter_ServeErrorStopsAndIsReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{})
		s := &Server{}
		boom := errors.New("boom")
		ret := make(chan error, 1)
		go func() { ret <- rt.r.ServeUntilSignal(s, func() error { return boom }) }()
		<-rt.sigc
		if err := <-ret; !errors.Is(err, boom) {
			t.Fatalf("ServeUntilSignal = %v, want the serve error", err)
		}
		if !fu.isStopped() {
			t.Error("the upgrader was not stopped")
		}
	})
}

func TestRestarter_ReadyFailureIsReturnedBeforeServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		fu.readyErr = errors.New("tableflip: can't write PID file: permission denied")
		rt := newRestartTest(t, fu, RestartOptions{})
		s := &Server{}
		served := false
		ret := make(chan error, 1)
		go func() {
			ret <- rt.r.ServeUntilSignal(s, func() error { served = true; return nil })
		}()
		<-rt.sigc
		if err := <-ret; !errors.Is(err, ErrReadyFailed) || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("ServeUntilSignal = %v, want ErrReadyFailed and the cause", err)
		}
		if served {
			t.Error("served although not ready")
		}
		if err := rt.r.Ready(); !errors.Is(err, ErrReadyFailed) || fu.readyCount() != 1 {
			t.Errorf("Ready again = %v after %d calls to tableflip, want the first result, one call", err, fu.readyCount())
		}
	})
}

func TestRestarter_UpgradeNeedsReadyAndRetriesTableflipsTransientRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{})
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrUpgradeFailed) {
			t.Fatalf("Upgrade before Ready = %v, want ErrUpgradeFailed", err)
		}
		fu.noUpgradePending(t)
		if err := rt.r.Ready(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- rt.r.Upgrade(context.Background()) }()
		(<-fu.upgrades) <- errors.New("process is not ready yet")
		(<-fu.upgrades) <- errors.New("parent hasn't exited")
		(<-fu.upgrades) <- nil
		if err := <-done; err != nil {
			t.Fatalf("Upgrade = %v, want nil after two transient refusals", err)
		}
		select {
		case <-rt.r.handedOff:
		default:
			t.Error("a successful Upgrade did not signal the handoff")
		}
		rt.r.Stop()
		if err := rt.r.Upgrade(context.Background()); !errors.Is(err, ErrRestarterStopped) {
			t.Errorf("Upgrade after Stop = %v, want ErrRestarterStopped", err)
		}
	})
}

func TestRestarter_ListenTakesInheritedThenSystemdThenNewListeners(t *testing.T) {
	tcpFile := func() (*os.File, string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // the file holds the socket
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		return f, l.Addr().String()
	}
	sdFile, sdAddr := tcpFile()
	unusedFile, unusedAddr := tcpFile()
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeW.Close()

	fu := newFakeUpgrader()
	fromParent, fromParentSD := newPipeListener("parent"), newPipeListener("parent-systemd")
	fu.inherit[[2]string{"tcp", "127.0.0.1:1"}] = fromParent
	fu.inherit[[2]string{"systemd:tcp", "127.0.0.1:2"}] = fromParentSD
	logs := new(logBuffer)
	r, err := newRestarter(RestartOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))}, restartEnv{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return []*os.File{sdFile, pipeR, unusedFile} },
		listen:          net.Listen,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	listen := func(addr string) net.Listener {
		t.Helper()
		ln, err := r.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("Listen(tcp, %s): %v", addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	if ln := listen("127.0.0.1:1"); ln != fromParent {
		t.Errorf("Listen did not return the inherited listener: %v", ln.Addr())
	}
	if ln := listen("127.0.0.1:2"); ln != fromParentSD {
		t.Errorf("Listen did not return the inherited systemd listener: %v", ln.Addr())
	}
	sd := listen(sdAddr)
	if sd.Addr().String() != sdAddr || fu.added[[2]string{"systemd:tcp", sdAddr}] != sd {
		t.Errorf("systemd listener %v, passed on as %v", sd.Addr(), fu.added)
	}
	fresh := listen("127.0.0.1:0")
	if fu.added[[2]string{"tcp", "127.0.0.1:0"}] != fresh {
		t.Errorf("new listener not passed on: %v", fu.added)
	}
	for _, ln := range []net.Listener{sd, fresh} { // both accept
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		ac, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ac.Close()
		c.Close()
	}

	if err := r.Ready(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", unusedAddr); err == nil {
		c.Close()
		t.Error("the systemd socket no Listen asked for is still open after Ready")
	}
	recs := logs.records(t)
	var from []string
	for _, rec := range find(t, recs, "drainhttp: listening", "network", "addr", "from") {
		from = append(from, rec["from"].(string))
	}
	if strings.Join(from, ",") != "parent,parent,systemd,new" {
		t.Errorf("listeners came from %v, want parent,parent,systemd,new", from)
	}
	if len(find(t, recs, "drainhttp: systemd passed a file that is not a listening socket; ignored", "name", "err")) != 1 ||
		len(find(t, recs, "drainhttp: systemd socket not asked for by Listen; closed", "addr")) != 1 {
		t.Errorf("warnings about systemd's files: %v", recs)
	}
}

type failingAdd struct{ *fakeUpgrader }

func (failingAdd) add(string, string, net.Listener) error { return errors.New("no fd") }

func TestRestarter_ListenErrorsWrapErrListenAndTheCause(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fu := newFakeUpgrader()
	r, err := newRestarter(RestartOptions{}, restartEnv{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return nil },
		listen:          net.Listen,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	_, err = r.Listen("tcp", busy.Addr().String())
	if !errors.Is(err, ErrListen) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on a busy address = %v, want ErrListen and EADDRINUSE", err)
	}

	var closed *pipeListener
	r2, err := newRestarter(RestartOptions{}, restartEnv{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return failingAdd{fu}, nil },
		activationFiles: func() []*os.File { return nil },
		listen: func(_, addr string) (net.Listener, error) {
			closed = newPipeListener(addr)
			return closed, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Stop()
	if _, err := r2.Listen("tcp", ":1"); !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), "cannot be handed over: no fd") {
		t.Errorf("Listen that cannot pass its listener on = %v", err)
	}
	if !closed.refuses() {
		t.Error("the listener that cannot be passed on was not closed")
	}
}

func TestBoundTo_MatchesSystemdSocketsByAddress(t *testing.T) {
	tcp := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	unix := &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}
	for _, tc := range []struct {
		a             net.Addr
		network, addr string
		want          bool
	}{
		{tcp("127.0.0.1", 8080), "tcp", "127.0.0.1:8080", true},
		{tcp("127.0.0.1", 8080), "tcp4", "127.0.0.1:8080", true},
		{tcp("::ffff:127.0.0.1", 8080), "tcp", "127.0.0.1:8080", true},
		{tcp("127.0.0.1", 8080), "tcp", "127.0.0.1:8081", false},
		{tcp("127.0.0.2", 8080), "tcp", "127.0.0.1:8080", false},
		{tcp("::", 8080), "tcp", ":8080", true},
		{tcp("0.0.0.0", 8080), "tcp", "[::]:8080", true},
		{tcp("127.0.0.1", 8080), "tcp", ":8080", false},
		{tcp("::", 80), "tcp", ":http", true},
		{tcp("127.0.0.1", 8080), "tcp", "localhost:8080", false}, // not resolved
		{tcp("127.0.0.1", 8080), "tcp", "127.0.0.1", false},
		{tcp("127.0.0.1", 8080), "udp", "127.0.0.1:8080", false},
		{unix, "unix", "/run/x.sock", true},
		{unix, "unix", "/run/y.sock", false},
		{unix, "unixpacket", "/run/x.sock", false},
		{unix, "tcp", "/run/x.sock", false},
	} {
		if got := boundTo(tc.a, tc.network, tc.addr); got != tc.want {
			t.Errorf("boundTo(%v, %q, %q) = %v, want %v", tc.a, tc.network, tc.addr, got, tc.want)
		}
	}
}

func TestRestarter_UpgradeCalledElsewhereMakesServeUntilSignalHandOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fu := newFakeUpgrader()
		rt := newRestartTest(t, fu, RestartOptions{})
		pub := rt.listen(":8080")
		s := &Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour}
		_, ret := rt.serve(s, pub)
		upgraded := make(chan error, 1)
		go func() { upgraded <- rt.r.Upgrade(context.Background()) }() // an admin endpoint, say
		(<-fu.upgrades) <- nil
		if err := <-upgraded; err != nil {
			t.Fatalf("Upgrade = %v", err)
		}
		if err := <-ret; err != nil {
			t.Fatalf("ServeUntilSignal = %v, want nil", err)
		}
		if !pub.refuses() {
			t.Error("the listener is still open after the handoff")
		}
	})
}

func TestRestarter_StopInAChildThatIsNotReadyLeavesTheParentsSocketsAlone(t *testing.T) {
	fu := newFakeUpgrader()
	fu.hasParent = true
	close(fu.parent)
	r, err := newRestarter(RestartOptions{}, restartEnv{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Stop() // say, the new process failed to load its configuration
	if fu.isStopped() {
		t.Error("a child that never got ready stopped tableflip, which unlinks its parent's Unix sockets")
	}
	if err := r.Upgrade(context.Background()); !errors.Is(err, ErrRestarterStopped) {
		t.Errorf("Upgrade after Stop = %v, want ErrRestarterStopped", err)
	}
	if err := r.Ready(); err != nil {
		t.Fatal(err)
	}
	r.Stop() // ready: it owns the sockets now
	if !fu.isStopped() {
		t.Error("a ready process did not stop tableflip")
	}
}
