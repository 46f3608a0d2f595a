package drainhttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// testTimeout bounds every wait in the server tests.
const testTimeout = 15 * time.Second

var testProtos = []string{"http/1.1", "h2c", "h2"}

// testServer serves one Server on two loopback listeners: plain (HTTP/1.1
// and h2c) and TLS (h2 and HTTP/1.1).
type testServer struct {
	t       *testing.T
	s       *Server
	addr    string
	tlsAddr string
	roots   *x509.CertPool
	served  chan error
}

func startServer(t *testing.T, s *Server) *testServer {
	t.Helper()
	cert, roots := h2TestCert(t)
	if s.Protocols == nil {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
		s.Protocols = &p
	}
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, s: s, addr: plain.Addr().String(), tlsAddr: secure.Addr().String(), roots: roots, served: make(chan error, 2)}
	go func() { ts.served <- s.Serve(plain) }()
	go func() { ts.served <- s.ServeTLS(secure, "", "") }()
	t.Cleanup(func() {
		s.Close()
		for range 2 {
			if err := <-ts.served; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		}
	})
	return ts
}

// client returns a client that speaks proto ("http/1.1", "h2c" or "h2") to
// the server, on its own connections, and the base URL to use.
func (ts *testServer) client(proto string) (*http.Client, string) {
	var p http.Protocols
	url := "http://" + ts.addr
	switch proto {
	case "http/1.1":
		p.SetHTTP1(true)
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	case "h2":
		p.SetHTTP2(true)
		url = "https://" + ts.tlsAddr
	default:
		ts.t.Fatalf("unknown protocol %q", proto)
	}
	tr := &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: ts.roots}}
	ts.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}, url
}

// drain runs Drain in the background.
func (ts *testServer) drain() <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- ts.s.Drain(context.Background()) }()
	return errc
}

// waitDrain waits for a drain started with ts.drain and returns how long it
// took from start.
func waitDrain(t *testing.T, errc <-chan error, start time.Time) time.Duration {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
		return time.Since(start)
	case <-time.After(testTimeout):
		t.Fatal("Drain did not return")
		return 0
	}
}

// get sends a GET and returns the body, and whether the connection was
// reused.
func get(t *testing.T, c *http.Client, url string) (body string, reused bool) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %q %v", url, resp.StatusCode, b, err)
	}
	return string(b), reused
}

func okHandler(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }

func TestServer_InFlightRequestCompletesAndTheNextOpensANewConnection(t *testing.T) {
	for _, proto := range testProtos {
		t.Run(proto, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			mux := http.NewServeMux()
			mux.HandleFunc("/", okHandler)
			mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				<-release
				io.WriteString(w, "done")
			})
			ts := startServer(t, &Server{Handler: mux, DrainTime: time.Second, Strategy: Immediate})
			c, url := ts.client(proto)
			get(t, c, url+"/")

			blocked := make(chan string, 1)
			go func() {
				body, reused := get(t, c, url+"/block")
				if !reused {
					t.Error("the blocked request did not reuse the first connection")
				}
				blocked <- body
			}()
			<-entered
			start := time.Now()
			drained := ts.drain()
			waitFor(t, "the connection to be marked draining", func() bool {
				st := ts.s.Stats()
				return st.Drained["proactive"]+st.Forced > 0 || ts.anyDraining()
			})
			close(release)
			if body := <-blocked; body != "done" {
				t.Fatalf("in-flight request got %q", body)
			}
			// The next requests succeed, and soon run on a new connection
			// (HTTP/1.1 may reuse the connection once more, for a response
			// that carries Connection: close; an HTTP/2 connection younger
			// than h2MinAge gets its GOAWAY when it reaches that age).
			waitFor(t, "a request on a new connection", func() bool {
				_, reused := get(t, c, url+"/")
				return !reused
			})
			c.Transport.(*http.Transport).CloseIdleConnections()
			if took := waitDrain(t, drained, start); took > time.Second+DefaultDrainTimeout+time.Second {
				t.Fatalf("drain took %v", took)
			}
			if st := ts.s.Stats(); st.Forced != 0 || st.OpenTotal != 0 {
				t.Fatalf("after the drain: %+v", st)
			}
		})
	}
}

// anyDraining reports whether some open connection is draining.
func (ts *testServer) anyDraining() bool {
	for _, c := range ts.s.tracker.snapshot() {
		if ConnDrainState(c.drain.Load()) != ConnNotDraining {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServer_DrainIdleH2SendsGoAwayAndCloses(t *testing.T) {
	for _, proto := range []string{"h2", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			const drainTime, drainTimeout = 400 * time.Millisecond, 3 * time.Second
			ts := startServer(t, &Server{Handler: http.HandlerFunc(okHandler), DrainTime: drainTime, DrainTimeout: drainTimeout})
			addr := ts.addr
			if proto == "h2" {
				addr = ts.tlsAddr
			}
			r := dialRawH2(t, proto, addr, ts.roots)
			r.request(1, "/")
			r.response(1)

			start := time.Now()
			drained := ts.drain()
			r.goaway(1)
			r.closed()
			if took := time.Since(start); took > drainTime+drainTimeout {
				t.Fatalf("idle %s connection closed %v after the drain started, want within %v", proto, took, drainTime+drainTimeout)
			}
			waitDrain(t, drained, start)
			st := ts.s.Stats()
			if st.GoAways != 1 || st.Drained["proactive"] != 1 || st.Forced != 0 {
				t.Fatalf("stats after draining one idle %s connection: %+v", proto, st)
			}
		})
	}
}

func TestServer_H2ConnectionWithoutRequestGetsNoGoAwayAndClosesAtItsDeadline(t *testing.T) {
	const drainTime, drainTimeout = 100 * time.Millisecond, 500 * time.Millisecond
	ts := startServer(t, &Server{Handler: http.HandlerFunc(okHandler), DrainTime: drainTime, DrainTimeout: drainTimeout})
	r := dialRawH2(t, "h2c", ts.addr, nil)
	r.next("the server's SETTINGS", func(f http2.Frame) bool { _, ok := f.(*http2.SettingsFrame); return ok })
	waitFor(t, "the connection to be served as h2c", func() bool { return ts.s.Stats().Open["h2c"]["idle"] == 1 })

	start := time.Now()
	drained := ts.drain()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			break
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("GOAWAY %v sent before the connection's first request: Go's client would fail that request", ga.ErrCode)
		}
	}
	if took := time.Since(start); took < drainTimeout {
		t.Fatalf("connection closed %v after the drain started, before its deadline", took)
	}
	waitDrain(t, drained, start)
	if st := ts.s.Stats(); st.Forced != 0 || st.GoAways != 0 || st.Drained["proactive"] != 1 {
		t.Fatalf("stats: %+v, want one idle connection drained without GOAWAY, not forced", st)
	}
}

func TestServer_HandlerThatNeverReturnsIsCutAtItsDeadline(t *testing.T) {
	for _, proto := range testProtos {
		t.Run(proto, func(t *testing.T) {
			const drainTimeout = 300 * time.Millisecond
			entered := make(chan struct{})
			stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				<-r.Context().Done() // stuck until the connection dies
			})
			ts := startServer(t, &Server{Handler: stuck, DrainTime: 50 * time.Millisecond, Strategy: Immediate, DrainTimeout: drainTimeout})
			c, url := ts.client(proto)
			failed := make(chan error, 1)
			go func() {
				resp, err := c.Get(url + "/")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				failed <- err
			}()
			<-entered
			start := time.Now()
			took := waitDrain(t, ts.drain(), start)
			if took < drainTimeout || took > drainTimeout+2*time.Second {
				t.Fatalf("drain with a stuck handler took %v, want its deadline %v", took, drainTimeout)
			}
			if err := <-failed; err == nil {
				t.Fatal("request to a stuck handler succeeded")
			}
			if st := ts.s.Stats(); st.Forced != 1 || st.OpenTotal != 0 {
				t.Fatalf("stats: %+v, want one forced close", st)
			}
		})
	}
}

func TestServer_HijackedConnectionLearnsOfTheDrainAndIsClosedAtItsDeadline(t *testing.T) {
	const drainTimeout = 300 * time.Millisecond
	notified, done := make(chan struct{}), make(chan struct{})
	connectionHeader := make(chan string, 1)
	ws := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		connectionHeader <- w.Header().Get("Connection")
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		go func() {
			defer close(done)
			<-Draining(r.Context())
			close(notified)
			io.Copy(io.Discard, conn) // a handler that ignores the notice
		}()
	})
	ts := startServer(t, &Server{Handler: ws, DrainTime: 200 * time.Millisecond, DrainTimeout: drainTimeout})
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if h := <-connectionHeader; h != "" {
		t.Fatalf("upgrade response given Connection: %q", h)
	}
	start := time.Now()
	drained := ts.drain()
	<-notified
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a hijacked connection that should be closed", n)
	}
	took := waitDrain(t, drained, start)
	<-done
	if took < drainTimeout {
		t.Fatalf("hijacked connection closed after %v, before its deadline", took)
	}
	if st := ts.s.Stats(); st.Forced != 1 || st.OpenTotal != 0 {
		t.Fatalf("stats: %+v, want one forced close", st)
	}
}

func TestServer_UpgradeDuringDrainIsNotToldToClose(t *testing.T) {
	got := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- w.Header().Get("Connection") })
	ts := startServer(t, &Server{Handler: h, DrainTime: time.Second, Strategy: Immediate, DrainTimeout: time.Second})
	start := time.Now()
	drained := ts.drain()
	waitFor(t, "the drain to start", func() bool { return ts.s.Manager().Draining() })
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if h := <-got; h != "" {
		t.Fatalf("upgrade request during a drain given Connection: %q", h)
	}
	conn.Close()
	waitDrain(t, drained, start)
}

func TestServer_ShutdownWithHTTP2ConnectionsDoesNotHang(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(okHandler)})
	for _, proto := range testProtos {
		c, url := ts.client(proto)
		get(t, c, url+"/")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with idle HTTP/2 connections: %v", err)
	}
}

func TestServer_DrainingTellsLongLivedHandlersToFinish(t *testing.T) {
	for _, proto := range testProtos {
		t.Run(proto, func(t *testing.T) {
			stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-Draining(r.Context()):
						io.WriteString(w, "bye\n")
						return
					case <-r.Context().Done():
						return
					case <-tick.C:
						io.WriteString(w, "event\n")
						if err := rc.Flush(); err != nil {
							t.Error(err)
							return
						}
					}
				}
			})
			ts := startServer(t, &Server{Handler: stream, DrainTime: 200 * time.Millisecond, DrainTimeout: 5 * time.Second})
			c, url := ts.client(proto)
			resp, err := c.Get(url + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			if !sc.Scan() || sc.Text() != "event" {
				t.Fatalf("first event: %q %v", sc.Text(), sc.Err())
			}
			start := time.Now()
			drained := ts.drain()
			last := ""
			for sc.Scan() {
				last = sc.Text()
			}
			if last != "bye" || sc.Err() != nil {
				t.Fatalf("stream ended with %q, %v; want a clean bye", last, sc.Err())
			}
			waitDrain(t, drained, start)
			if st := ts.s.Stats(); st.Forced != 0 {
				t.Fatalf("stats: %+v, want no forced close", st)
			}
		})
	}
}

func TestServer_LosesNoRequestDuringAGradualDrain(t *testing.T) {
	const drainTime = 2 * time.Second
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", okHandler)
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	ts := startServer(t, &Server{Handler: mux, DrainTime: drainTime, DrainTimeout: 2 * time.Second})

	type client struct {
		proto string
		post  bool
	}
	var clients []client
	for i := range 16 {
		switch {
		case i < 6:
			clients = append(clients, client{"http/1.1", false})
		case i < 11:
			clients = append(clients, client{"http/1.1", true})
		default:
			clients = append(clients, client{"h2c", false})
		}
	}
	var requests, failures atomic.Int64
	stop := func() bool { return ts.s.Manager().Progress() >= 0.8 }
	var wg sync.WaitGroup
	for i, cl := range clients {
		c, url := ts.client(cl.proto)
		wg.Go(func() {
			for n := 0; !stop(); n++ {
				var resp *http.Response
				var err error
				want := "ok"
				if cl.post {
					want = fmt.Sprintf("client %d request %d", i, n)
					resp, err = c.Post(url+"/echo", "text/plain", strings.NewReader(want))
				} else {
					resp, err = c.Get(url + "/")
				}
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("%s client %d: %v", cl.proto, i, err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(body) != want || resp.StatusCode != http.StatusOK {
					failures.Add(1)
					t.Errorf("%s client %d: %d %q %v", cl.proto, i, resp.StatusCode, body, err)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // load before the drain
	start := time.Now()
	drained := ts.drain()
	wg.Wait()
	took := waitDrain(t, drained, start)
	st := ts.s.Stats()
	t.Logf("%d requests, %d failed; drain took %v; stats %+v", requests.Load(), failures.Load(), took, st)
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failures.Load(), requests.Load())
	}
	if st.Accepted < 2*16 {
		t.Fatalf("only %d connections accepted for 16 clients: connections did not cycle", st.Accepted)
	}
	if st.Drained["decision"] == 0 || st.Forced != 0 {
		t.Fatalf("stats %+v: want connections drained by the decision and none forced", st)
	}
}

func TestServer_RejectsInvalidOptions(t *testing.T) {
	for _, s := range []*Server{
		{DrainTime: -time.Second},
		{DrainTimeout: -time.Second},
		{ShutdownDelay: -time.Second},
		{Strategy: Strategy(9)},
		{DrainTimeJitter: 3},
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Serve(l); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("Serve with invalid options returned %v, want ErrInvalidOption", err)
		}
		l.Close()
		if err := s.Drain(context.Background()); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("Drain with invalid options returned %v", err)
		}
	}
}

func TestServer_ReadyHandlerFailsAsSoonAsTheDrainStarts(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(okHandler), ShutdownDelay: 300 * time.Millisecond, DrainTime: 100 * time.Millisecond})
	ready := ts.s.ReadyHandler()
	probe := func() int {
		rec := &statusRecorder{header: http.Header{}}
		ready.ServeHTTP(rec, &http.Request{})
		return rec.status
	}
	if code := probe(); code != http.StatusOK {
		t.Fatalf("ready before drain: %d", code)
	}
	ts.s.Manager().HealthCheckFail()
	if code := probe(); code != http.StatusServiceUnavailable {
		t.Fatalf("ready with health check failed: %d", code)
	}
	ts.s.Manager().HealthCheckOK()
	c, url := ts.client("http/1.1")
	start := time.Now()
	drained := ts.drain()
	waitFor(t, "readiness to fail", func() bool { return probe() == http.StatusServiceUnavailable })
	// During the shutdown delay the server still serves normally.
	if !strings.Contains(fmt.Sprint(get(t, c, url+"/")), "ok") || ts.s.Manager().Draining() {
		t.Fatal("not serving normally during the shutdown delay")
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	if took := waitDrain(t, drained, start); took < 400*time.Millisecond {
		t.Fatalf("drain with a 300ms shutdown delay and 100ms drain time took %v", took)
	}
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}
func (r *statusRecorder) WriteHeader(code int) { r.status = code }

func TestServer_ServeUntilSignalDrainsAndASecondSignalHurries(t *testing.T) {
	sigs := make(chan chan<- os.Signal, 1)
	s := &Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour, DrainTimeout: time.Second}
	s.notify = func(c chan<- os.Signal, _ ...os.Signal) { sigs <- c }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() { returned <- s.ServeUntilSignal(func() error { return s.Serve(l) }) }()
	notify := <-sigs
	notify <- syscall.SIGTERM
	waitFor(t, "the drain to start", func() bool { return s.Manager().Draining() })
	select {
	case err := <-returned:
		t.Fatalf("ServeUntilSignal returned %v during an hour-long drain", err)
	case <-time.After(50 * time.Millisecond):
	}
	notify <- syscall.SIGINT
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("ServeUntilSignal: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("a second signal did not cut the drain short")
	}
}

func TestServer_ServeUntilSignalReturnsAServeError(t *testing.T) {
	s := &Server{Addr: "127.0.0.1:bad-port"}
	s.notify = func(chan<- os.Signal, ...os.Signal) {}
	if err := s.ListenAndServeUntilSignal(); err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("ListenAndServeUntilSignal on a bad address returned %v", err)
	}
}

func TestServer_DrainContextEndCutsEverythingShort(t *testing.T) {
	entered := make(chan struct{})
	stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	})
	ts := startServer(t, &Server{Handler: stuck, DrainTime: time.Hour, DrainTimeout: time.Hour})
	c, url := ts.client("h2c")
	go func() {
		if resp, err := c.Get(url + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.s.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with an expiring context returned %v", err)
	}
	if st := ts.s.Stats(); st.OpenTotal != 0 {
		t.Fatalf("connections left open after Drain's context ended: %+v", st)
	}
}

func TestServer_DrainReturnsAtTheDeadlineEvenIfAHandlerIgnoresItsContext(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	deaf := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release // ignores r.Context()
	})
	const drainTimeout = 200 * time.Millisecond
	ts := startServer(t, &Server{Handler: deaf, DrainTime: 50 * time.Millisecond, DrainTimeout: drainTimeout})
	c, url := ts.client("http/1.1")
	failed := make(chan error, 1)
	go func() {
		resp, err := c.Get(url + "/")
		if err == nil {
			resp.Body.Close()
		}
		failed <- err
	}()
	<-entered
	start := time.Now()
	if took := waitDrain(t, ts.drain(), start); took > 50*time.Millisecond+drainTimeout+2*time.Second {
		t.Fatalf("drain took %v", took)
	}
	if err := <-failed; err == nil {
		t.Fatal("request to a handler that never answered succeeded")
	}
}

func TestServer_RegisterOnShutdownRunsWhenDrainClosesTheListeners(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(okHandler), DrainTime: 50 * time.Millisecond})
	ran := make(chan struct{})
	ts.s.RegisterOnShutdown(func() { close(ran) })
	start := time.Now()
	waitDrain(t, ts.drain(), start)
	select {
	case <-ran:
	case <-time.After(testTimeout):
		t.Fatal("OnShutdown function did not run")
	}
}

func TestServer_DrainAfterHandoffStopsAcceptingAtOnceAndDrainsTheRest(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(okHandler), DrainTime: 300 * time.Millisecond, ShutdownDelay: time.Hour})
	c, url := ts.client("h2c")
	get(t, c, url+"/")
	start := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- ts.s.DrainAfterHandoff(context.Background()) }()
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", ts.addr)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	// The connection opened before the handoff is still served, then
	// drained: the shutdown delay does not apply. Readiness stays 200 (the
	// new process serves the address), closing the connection it came on.
	get(t, c, url+"/")
	rec := httptest.NewRecorder()
	ts.s.ReadyHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/ready", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Connection") != "close" {
		t.Fatalf("ready after a handoff: %d %v, want 200 with Connection: close", rec.Code, rec.Header())
	}
	took := waitDrain(t, drained, start)
	if took > 300*time.Millisecond+DefaultDrainTimeout+time.Second {
		t.Fatalf("drain after handoff took %v", took)
	}
	if st := ts.s.Stats(); st.GoAways != 1 || st.Forced != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestServer_DrainAfterHandoffEndsOnceNoConnectionIsLeft(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(okHandler), DrainTime: time.Hour})
	start := time.Now()
	if err := ts.s.DrainAfterHandoff(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("drain after handoff with no connection took %v of an hour-long window", took)
	}
}
