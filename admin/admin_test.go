package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// adminTest is a drainhttp.Server serving HTTP/1.1 on 127.0.0.1:0 and its
// admin handler served by a plain httptest.Server.
type adminTest struct {
	t      *testing.T
	s      *drainhttp.Server
	url    string // the drained server
	admin  string // the admin handler
	client *http.Client
	served chan error // Serve's result
}

// startAdminTest serves s and New(s, opts). Cleanup drains s at once
// unless it is done already (cutting short a drain started through the
// handler),
// checks that Serve returned http.ErrServerClosed and closes the admin
// server.
func startAdminTest(t *testing.T, s *drainhttp.Server, opts Options) *adminTest {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	at := &adminTest{
		t:      t,
		s:      s,
		url:    "http://" + l.Addr().String(),
		client: &http.Client{Transport: &http.Transport{}, Timeout: testTimeout},
		served: make(chan error, 1),
	}
	go func() { at.served <- s.Serve(l) }()
	adm := httptest.NewServer(New(s, opts))
	at.admin = adm.URL
	t.Cleanup(func() {
		select {
		case <-s.Done():
		default:
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := s.DrainNow(ctx); err != nil {
				t.Errorf("DrainNow in cleanup: %v", err)
			}
		}
		select {
		case err := <-at.served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		case <-time.After(testTimeout):
			t.Error("Serve did not return after the drain")
		}
		at.client.CloseIdleConnections()
		adm.Close()
	})
	return at
}

// do sends a request to the admin handler and returns the response with its
// body read.
func (at *adminTest) do(method, path string, header ...string) (*http.Response, string) {
	at.t.Helper()
	req, err := http.NewRequest(method, at.admin+path, nil)
	if err != nil {
		at.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := at.client.Do(req)
	if err != nil {
		at.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		at.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(body)
}

// expect sends a request and fails unless the status code is want. It
// returns the body.
func (at *adminTest) expect(want int, method, path string, header ...string) string {
	at.t.Helper()
	resp, body := at.do(method, path, header...)
	if resp.StatusCode != want {
		at.t.Fatalf("%s %s: status %d, want %d; body %q", method, path, resp.StatusCode, want, body)
	}
	return body
}

// decodeStatus parses a Status and checks the fields that must be there
// whatever the state.
func decodeStatus(t *testing.T, body string) Status {
	t.Helper()
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, body)
	}
	if st.Connections.Open == nil || st.Connections.Drained == nil || st.Now.IsZero() ||
		len(st.Timeline) == 0 || st.Timeline[0].Phase != "serving" || st.Timeline[len(st.Timeline)-1].Phase != st.Phase {
		t.Fatalf("status lacks connections, now or a timeline from serving to its phase:\n%s", body)
	}
	return st
}

func (at *adminTest) status() Status {
	at.t.Helper()
	return decodeStatus(at.t, at.expect(http.StatusOK, "GET", "/status"))
}

// phaseWaiter follows a server's phases through OnPhase.
type phaseWaiter struct {
	mu      sync.Mutex
	entered map[drainhttp.Phase]chan struct{}
}

// watchPhases starts following s's phases; call it before the shutdown
// starts.
func watchPhases(t *testing.T, s *drainhttp.Server) *phaseWaiter {
	pw := &phaseWaiter{entered: map[drainhttp.Phase]chan struct{}{}}
	t.Cleanup(s.OnPhase(func(pc drainhttp.PhaseChange) { close(pw.ch(pc.Phase)) }))
	return pw
}

func (pw *phaseWaiter) ch(p drainhttp.Phase) chan struct{} {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.entered[p] == nil {
		pw.entered[p] = make(chan struct{})
	}
	return pw.entered[p]
}

// wait waits until the server has entered p.
func (pw *phaseWaiter) wait(t *testing.T, p drainhttp.Phase) {
	t.Helper()
	select {
	case <-pw.ch(p):
	case <-time.After(testTimeout):
		t.Fatalf("the server did not enter %v", p)
	}
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
}

// timeline is st's timeline as "phase(cause)" items.
func timeline(st Status) string {
	var b []string
	for _, pc := range st.Timeline {
		b = append(b, pc.Phase+"("+pc.Cause+")")
	}
	return strings.Join(b, " ")
}

func TestHandler_RoutesMethodsAndUnknownPaths(t *testing.T) {
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond}, Options{})
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/ready", http.StatusOK, ""},
		{"HEAD", "/ready", http.StatusOK, ""},
		{"GET", "/status", http.StatusOK, ""},
		{"HEAD", "/status", http.StatusOK, ""},
		{"POST", "/ready", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"PUT", "/status", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET", "/drain", http.StatusMethodNotAllowed, "POST"},
		{"DELETE", "/drain", http.StatusMethodNotAllowed, "POST"},
		{"GET", "/healthcheck/fail", http.StatusMethodNotAllowed, "POST"},
		{"GET", "/healthcheck/ok", http.StatusMethodNotAllowed, "POST"},
		{"GET", "/", http.StatusOK, ""},
		{"HEAD", "/", http.StatusOK, ""},
		{"POST", "/", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET", "/metrics", http.StatusNotFound, ""}, // no Metrics handler
		{"GET", "/nope", http.StatusNotFound, ""},
		{"GET", "/status/extra", http.StatusNotFound, ""},
		{"GET", "/healthcheck", http.StatusNotFound, ""},
	} {
		resp, body := at.do(tc.method, tc.path)
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: status %d, want %d; body %q", tc.method, tc.path, resp.StatusCode, tc.code, body)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", tc.method, tc.path, got)
		}
	}
	if st := at.status(); st.State != "serving" || st.Phase != "serving" {
		t.Errorf("state %q, phase %q after non-mutating requests, want serving", st.State, st.Phase)
	}
}

func TestHandler_StatusWhileServing(t *testing.T) {
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond, Strategy: drainhttp.Immediate},
		Options{})
	resp, err := at.client.Get(at.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	resp, body := at.do("GET", "/status")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	st := decodeStatus(t, body)
	want := Status{
		State: "serving", Phase: "serving", Ready: true, Strategy: "immediate",
		DrainTime: "100ms", DrainTimeout: "5s", ShutdownDelay: "0s", Listeners: 1,
	}
	if st.State != want.State || st.Phase != want.Phase || st.Ready != want.Ready || st.HealthCheckFailed ||
		st.Handoff || st.Done || st.Strategy != want.Strategy ||
		st.DrainTime != want.DrainTime || st.DrainTimeout != want.DrainTimeout ||
		st.ShutdownDelay != want.ShutdownDelay || st.Listeners != want.Listeners || st.Progress != 0 {
		t.Errorf("status:\n%s\nwant the fields of %+v", body, want)
	}
	if got := timeline(st); got != "serving()" {
		t.Errorf("timeline %s, want serving() alone", got)
	}
	// The server may not have marked the connection idle yet when the
	// client has read the response.
	h1 := st.Connections.Open["http/1.1"]
	if st.Connections.Accepted != 1 || st.Connections.OpenTotal != 1 || h1["idle"]+h1["active"] != 1 {
		t.Errorf("connections %+v, want 1 accepted, 1 open HTTP/1.1", st.Connections)
	}
	// Before a drain the window fields are null, not zero times, and
	// without Adaptive there is no adaptive object.
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"started", "deadline", "time_left_seconds"} {
		if v, ok := raw[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	if _, ok := raw["adaptive"]; ok {
		t.Errorf("adaptive present without Server.Adaptive: %v", raw["adaptive"])
	}
	tl := raw["timeline"].([]any)[0].(map[string]any)
	if tl["phase"] != "serving" || tl["cause"] != "" || tl["at"] == nil {
		t.Errorf("timeline entry %v, want phase, at and cause", tl)
	}
}

func TestHandler_StatusShowsAdaptiveShutdown(t *testing.T) {
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), Adaptive: &drainhttp.AdaptiveShutdown{}}, Options{})
	st := at.status()
	if a := st.Adaptive; a == nil || a.Probes != drainhttp.DefaultAdaptiveProbes || a.Quiet != "2s" || a.ProbeSources == nil {
		t.Fatalf("adaptive %+v, want the defaults: probes 3, quiet 2s, no probe source", st.Adaptive)
	}
	// A request that is not a probe is traffic.
	resp, err := at.client.Get(at.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if st := at.status(); st.Adaptive.LastTraffic == nil || st.Adaptive.LastTraffic.After(st.Now) {
		t.Errorf("last_traffic %v after a request (now %v), want a time", st.Adaptive.LastTraffic, st.Now)
	}
}

func TestHandler_HealthCheckFailAndOK(t *testing.T) {
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond}, Options{})
	at.expect(http.StatusOK, "GET", "/ready")

	st := decodeStatus(t, at.expect(http.StatusOK, "POST", "/healthcheck/fail"))
	if !st.HealthCheckFailed || st.Ready || st.State != "serving" || st.Phase != "serving" {
		t.Errorf("after fail: %+v, want health check failed, not ready, serving", st)
	}
	if body := at.expect(http.StatusServiceUnavailable, "GET", "/ready"); body != "draining\n" {
		t.Errorf("/ready body %q after fail", body)
	}
	at.expect(http.StatusOK, "POST", "/healthcheck/fail") // twice is harmless

	st = decodeStatus(t, at.expect(http.StatusOK, "POST", "/healthcheck/ok"))
	if st.HealthCheckFailed || !st.Ready {
		t.Errorf("after ok: %+v, want health check passing, ready", st)
	}
	at.expect(http.StatusOK, "GET", "/ready")
}

func TestHandler_TokenGuardsPOSTOnly(t *testing.T) {
	const token = "s3cret-token"
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond}, Options{Token: token})
	for _, path := range []string{"/drain", "/drain?strategy=immediate", "/healthcheck/fail", "/healthcheck/ok"} {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + token, token, "Bearer"} {
			var h []string
			if auth != "" {
				h = []string{"Authorization", auth}
			}
			resp, body := at.do("POST", path, h...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("POST %s with Authorization %q: status %d, want 401; body %q", path, auth, resp.StatusCode, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("POST %s with Authorization %q: WWW-Authenticate %q, want a Bearer challenge", path, auth, got)
			}
		}
	}
	// Nothing happened, and reads need no token.
	at.expect(http.StatusOK, "GET", "/ready")
	if st := at.status(); st.State != "serving" || st.HealthCheckFailed {
		t.Fatalf("rejected requests changed the server: %+v", st)
	}
	// The scheme is case-insensitive.
	st := decodeStatus(t, at.expect(http.StatusOK, "POST", "/healthcheck/fail", "Authorization", "bearer "+token))
	if !st.HealthCheckFailed {
		t.Error("authorized /healthcheck/fail did not fail the health check")
	}
	at.expect(http.StatusOK, "POST", "/healthcheck/ok", "Authorization", "Bearer "+token)
	// The method check comes first: a GET on a POST endpoint is 405, not 401.
	at.expect(http.StatusMethodNotAllowed, "GET", "/drain")
}

func TestHandler_DrainRejectsUnknownStrategy(t *testing.T) {
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond}, Options{})
	for _, q := range []string{"fast", "Immediate", "0"} {
		body := at.expect(http.StatusBadRequest, "POST", "/drain?strategy="+q)
		if !strings.Contains(body, "drainhttp:") || !strings.Contains(body, `"`+q+`"`) ||
			!strings.Contains(body, "want gradual or immediate") {
			t.Errorf("strategy=%s: body %q, want a drainhttp: error naming the value and the choices", q, body)
		}
	}
	if body := at.expect(http.StatusBadRequest, "POST", "/drain?strategy=%zz"); !strings.Contains(body, "bad query") {
		t.Errorf("malformed query: body %q, want it named", body)
	}
	if st := at.status(); st.State != "serving" || !st.Ready {
		t.Errorf("a rejected drain changed the server: %+v", st)
	}
}

// TestHandler_DrainAnswersWithTheStartedWindow is the regression test for
// a 202 that contradicted itself: "state":"draining" with started and
// deadline null, because the answer was written before the window had
// started.
func TestHandler_DrainAnswersWithTheStartedWindow(t *testing.T) {
	const drainTime = time.Minute // the window is still running when the answer is checked
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: drainTime}, Options{})
	resp, body := at.do("POST", "/drain")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /drain: status %d, want 202; body %q", resp.StatusCode, body)
	}
	st := decodeStatus(t, body)
	if st.State != "draining" || st.Phase != "window" || st.Ready || st.Strategy != "gradual" {
		t.Errorf("202 body: state %q, phase %q, ready %v, strategy %q; want draining, window, not ready, gradual",
			st.State, st.Phase, st.Ready, st.Strategy)
	}
	if st.Started == nil || st.Deadline == nil || st.TimeLeftSeconds == nil {
		t.Fatalf("202 body has started %v, deadline %v, time_left_seconds %v; want the running window:\n%s",
			st.Started, st.Deadline, st.TimeLeftSeconds, body)
	}
	if got := st.Deadline.Sub(*st.Started); got != drainTime {
		t.Errorf("window %v, want %v", got, drainTime)
	}
	if left := *st.TimeLeftSeconds; left <= 0 || left > drainTime.Seconds() || st.Started.After(st.Now) {
		t.Errorf("time_left_seconds %v, started %v, now %v: want a window that started by now", left, st.Started, st.Now)
	}
	if got, want := timeline(st), "serving() not_ready(drain) window(no_delay)"; got != want {
		t.Errorf("timeline %s, want %s", got, want)
	}
	at.expect(http.StatusServiceUnavailable, "GET", "/ready")
}

func TestHandler_DrainIsIdempotentAndImmediateCutsItShort(t *testing.T) {
	const drainTime = time.Minute // long: the immediate drain must cut it short
	s := &drainhttp.Server{Handler: okHandler(), DrainTime: drainTime}
	at := startAdminTest(t, s, Options{})
	first := decodeStatus(t, at.expect(http.StatusAccepted, "POST", "/drain"))
	if first.State != "draining" || first.Started == nil {
		t.Fatalf("first drain: %+v", first)
	}
	// A second gradual request does not restart the window.
	second := decodeStatus(t, at.expect(http.StatusAccepted, "POST", "/drain?strategy=gradual"))
	if second.Started == nil || !second.Started.Equal(*first.Started) || !second.Deadline.Equal(*first.Deadline) {
		t.Errorf("second POST /drain moved the window: %v..%v, was %v..%v",
			second.Started, second.Deadline, first.Started, first.Deadline)
	}

	// An immediate one ends it now.
	cut := decodeStatus(t, at.expect(http.StatusAccepted, "POST", "/drain?strategy=immediate"))
	if cut.Strategy != "immediate" || cut.Progress != 1 {
		t.Errorf("immediate drain: strategy %q, progress %v; want immediate, 1", cut.Strategy, cut.Progress)
	}
	select {
	case <-s.Done():
	case <-time.After(testTimeout):
		t.Fatal("the server did not finish after the immediate drain")
	}
	st := at.status()
	if st.State != "drained" || st.Phase != "drained" || !st.Done || st.Strategy != "immediate" || st.Progress != 1 ||
		st.Ready || st.Listeners != 0 || st.TimeLeftSeconds == nil || *st.TimeLeftSeconds != 0 {
		t.Errorf("drained status: %+v", st)
	}
	want := "serving() not_ready(drain) window(no_delay) closing_listeners(hurried) closing_connections(listeners_closed) drained(no_connection_left)"
	if got := timeline(st); got != want {
		t.Errorf("timeline %s, want %s", got, want)
	}
	// The admin handler still answers, and further drains are harmless.
	at.expect(http.StatusAccepted, "POST", "/drain")
	at.expect(http.StatusAccepted, "POST", "/drain?strategy=immediate")
	if st := at.status(); st.State != "drained" {
		t.Errorf("state %q after repeated drains, want drained", st.State)
	}
}

func TestHandler_DrainDuringShutdownDelayAnswersShutdownDelay(t *testing.T) {
	s := &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond, ShutdownDelay: time.Minute}
	at := startAdminTest(t, s, Options{})
	st := decodeStatus(t, at.expect(http.StatusAccepted, "POST", "/drain"))
	if st.State != "shutdown_delay" || st.Phase != "not_ready" || st.Ready || st.Started != nil ||
		st.TimeLeftSeconds != nil || st.Progress != 0 || st.ShutdownDelay != "1m0s" {
		t.Errorf("shutdown_delay status: %+v", st)
	}
	at.expect(http.StatusServiceUnavailable, "GET", "/ready")
	// Immediate skips the rest of the delay.
	at.expect(http.StatusAccepted, "POST", "/drain?strategy=immediate")
	select {
	case <-s.Done():
	case <-time.After(testTimeout):
		t.Fatal("the server did not finish after the immediate drain")
	}
	st = at.status()
	if got, want := timeline(st), "serving() not_ready(drain) window(hurried)"; st.State != "drained" || !strings.HasPrefix(got, want) {
		t.Errorf("state %q, timeline %s; want drained, from %s", st.State, got, want)
	}
}

func TestHandler_ClosingStateAndForcedConnection(t *testing.T) {
	entered := make(chan struct{}, 1)
	blocking := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done() // a stuck request: only the drain deadline ends it
	})
	// DrainTimeout outlasts closing the listeners (at most a second), so
	// that the stuck request is still there in PhaseClosingConns.
	s := &drainhttp.Server{Handler: blocking, DrainTime: 50 * time.Millisecond, DrainTimeout: 2 * time.Second}
	at := startAdminTest(t, s, Options{})
	phases := watchPhases(t, s)
	reqDone := make(chan error, 1)
	go func() {
		resp, err := at.client.Get(at.url + "/")
		if err == nil {
			resp.Body.Close()
		}
		reqDone <- err
	}()
	select {
	case <-entered:
	case <-time.After(testTimeout):
		t.Fatal("request did not reach the handler")
	}
	at.expect(http.StatusAccepted, "POST", "/drain")
	phases.wait(t, drainhttp.PhaseClosingConns)
	// The stuck request holds the server here until its deadline.
	st := at.status()
	if st.State != "closing" || st.Phase != "closing_connections" || st.Listeners != 0 ||
		st.Connections.OpenTotal != 1 || st.Progress != 1 {
		t.Errorf("closing status: %+v", st)
	}
	<-s.Done()
	st = at.status()
	if st.State != "drained" || st.Connections.Forced != 1 || st.Connections.OpenTotal != 0 {
		t.Errorf("drained status: %+v, want 1 forced connection and none open", st)
	}
	select {
	case err := <-reqDone:
		if err == nil {
			t.Error("the stuck request succeeded, want an error from the forced close")
		}
	case <-time.After(testTimeout):
		t.Fatal("the stuck request did not end")
	}
}

func TestHandler_ShutdownShowsClosingThenClosed(t *testing.T) {
	s := &drainhttp.Server{Handler: okHandler()}
	at := startAdminTest(t, s, Options{})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := at.status()
	want := "serving() closing_listeners(shutdown) closing_connections(listeners_closed) closed(no_connection_left)"
	if st.State != "closed" || !st.Done || timeline(st) != want {
		t.Errorf("after Shutdown: state %q, done %v, timeline %s; want closed, done, %s", st.State, st.Done, timeline(st), want)
	}
	// A drain now has nothing to do.
	if st := decodeStatus(t, at.expect(http.StatusAccepted, "POST", "/drain")); st.State != "closed" {
		t.Errorf("POST /drain after Shutdown: state %q, want closed", st.State)
	}
}

func TestHandler_ManagerDrainedAloneShowsDraining(t *testing.T) {
	s := &drainhttp.Server{Handler: okHandler(), DrainTime: time.Minute}
	at := startAdminTest(t, s, Options{})
	m, err := s.Manager()
	if err != nil {
		t.Fatal(err)
	}
	m.StartDrainSequence(nil)
	st := at.status()
	if st.State != "draining" || st.Phase != "serving" || st.Started == nil || st.Ready {
		t.Errorf("after the Manager's own drain: state %q, phase %q, started %v, ready %v; want draining, serving, a window, not ready",
			st.State, st.Phase, st.Started, st.Ready)
	}
}

func TestState_FollowsThePhase(t *testing.T) {
	for _, tc := range []struct {
		phase    drainhttp.Phase
		draining bool
		want     string
	}{
		{drainhttp.PhaseServing, false, "serving"},
		{drainhttp.PhaseServing, true, "draining"},
		{drainhttp.PhaseNotReady, false, "shutdown_delay"},
		{drainhttp.PhaseWindow, true, "draining"},
		{drainhttp.PhaseClosingListeners, true, "closing"},
		{drainhttp.PhaseClosingListeners, false, "closing"}, // Shutdown
		{drainhttp.PhaseClosingConns, true, "closing"},
		{drainhttp.PhaseDrained, true, "drained"},
		{drainhttp.PhaseClosed, false, "closed"},
		{drainhttp.PhaseClosed, true, "closed"},
	} {
		if got := state(tc.phase, tc.draining); got != tc.want {
			t.Errorf("state(%v, %v) = %q, want %q", tc.phase, tc.draining, got, tc.want)
		}
	}
}

func TestHandler_MetricsHandler(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up 1\n") })
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler()}, Options{Metrics: metrics})
	if body := at.expect(http.StatusOK, "GET", "/metrics"); body != "up 1\n" {
		t.Errorf("/metrics body %q", body)
	}
	resp, _ := at.do("POST", "/metrics")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics: status %d, Allow %q; want 405, GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
	at.expect(http.StatusMisdirectedRequest, "GET", "/metrics", "Host", "evil.example")
}

func TestHandler_RejectsCrossOriginBrowserPOST(t *testing.T) {
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond}, Options{})
	body := at.expect(http.StatusForbidden, "POST", "/drain", "Sec-Fetch-Site", "cross-site")
	if !strings.Contains(body, "cross-origin request refused") {
		t.Errorf("403 body %q, want it to say why", body)
	}
	at.expect(http.StatusForbidden, "POST", "/healthcheck/fail", "Origin", "https://evil.example")
	if st := at.status(); st.State != "serving" || st.HealthCheckFailed {
		t.Errorf("cross-origin requests changed the server: %+v", st)
	}
	// Same-origin browser requests pass.
	at.expect(http.StatusOK, "POST", "/healthcheck/fail", "Sec-Fetch-Site", "same-origin")
}

// TestHandler_RefusesDNSRebinding is the regression test for a page on
// evil.example, resolving to 127.0.0.1, that could fail the health check:
// its browser sends Host: evil.example and Sec-Fetch-Site: same-origin,
// which cross-origin protection lets through.
func TestHandler_RefusesDNSRebinding(t *testing.T) {
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond}, Options{})
	rebound := []string{"Host", "evil.example", "Sec-Fetch-Site", "same-origin"}
	for _, r := range []struct{ method, path string }{
		{"POST", "/healthcheck/fail"}, {"POST", "/healthcheck/ok"}, {"POST", "/drain"},
		{"GET", "/"}, {"GET", "/status"}, {"GET", "/ready"}, {"GET", "/metrics"}, {"GET", "/nope"},
	} {
		resp, body := at.do(r.method, r.path, rebound...)
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("%s %s with Host evil.example: status %d, want 421; body %q", r.method, r.path, resp.StatusCode, body)
			continue
		}
		for _, want := range []string{`Host "evil.example" is not allowed`, "AllowedHosts", "DNS rebinding", "127.0.0.1"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s %s: 421 body %q lacks %q", r.method, r.path, body, want)
			}
		}
	}
	if st := at.status(); st.State != "serving" || st.HealthCheckFailed || !st.Ready {
		t.Errorf("rebound requests changed the server: %+v", st)
	}
	// The same request for a loopback name passes.
	at.expect(http.StatusOK, "POST", "/healthcheck/fail", "Host", "localhost:9901", "Sec-Fetch-Site", "same-origin")
}

func TestHandler_AllowsLoopbackOwnAddressAndAllowedHosts(t *testing.T) {
	s := &drainhttp.Server{Handler: okHandler()}
	for _, tc := range []struct {
		allowed []string
		local   string // the connection's own address
		host    string
		ok      bool
	}{
		{nil, "127.0.0.1:9901", "localhost", true},
		{nil, "127.0.0.1:9901", "localhost:9901", true},
		{nil, "127.0.0.1:9901", "LocalHost.:80", true},
		{nil, "127.0.0.1:9901", "admin.localhost:9901", true},
		{nil, "127.0.0.1:9901", "127.0.0.1:9901", true},
		{nil, "127.0.0.1:9901", "127.8.9.10", true},
		{nil, "[::1]:9901", "[::1]:9901", true},
		{nil, "[::1]:9901", "[::1]", true},
		{nil, "127.0.0.1:9901", "[::ffff:127.0.0.1]:9901", true},
		{nil, "10.1.2.3:9901", "10.1.2.3:9901", true},          // the pod's own address
		{nil, "10.1.2.3:9901", "10.1.2.3:19901", true},         // forwarded to it from another port
		{nil, "[fd00::7]:9901", "[FD00:0::7]:9901", true},      // another spelling
		{nil, "[fe80::1%eth0]:9901", "[fe80::1]:9901", true},   // zone from the listener
		{nil, "[::ffff:10.1.2.3]:9901", "10.1.2.3:9901", true}, // a dual-stack socket
		{nil, "10.1.2.3:9901", "10.1.2.4:9901", false},
		{nil, "127.0.0.1:9901", "evil.example", false},
		{nil, "127.0.0.1:9901", "localhost.evil.example", false},
		{nil, "127.0.0.1:9901", "127.0.0.1.nip.io", false},
		{nil, "127.0.0.1:9901", "evillocalhost", false},
		{nil, "127.0.0.1:9901", "0.0.0.0:9901", false},
		{nil, "127.0.0.1:9901", "", false},
		{nil, "127.0.0.1:9901", "127.0.0.1:x", false}, // a malformed port
		{nil, "127.0.0.1:9901", "localhost:123456", false},
		{nil, "127.0.0.1:9901", "localhost:", true}, // an empty port is the default one
		{nil, "", "10.1.2.3", false},                // no local address known
		{[]string{"admin.internal"}, "10.1.2.3:9901", "admin.internal:9901", true},
		{[]string{"Admin.Internal."}, "10.1.2.3:9901", "admin.internal", true},
		{[]string{"admin.internal"}, "10.1.2.3:9901", "x.admin.internal", false},
		{[]string{"*.svc.cluster.local"}, "10.1.2.3:9901", "app.ns.svc.cluster.local:9901", true},
		{[]string{"*.svc.cluster.local"}, "10.1.2.3:9901", "svc.cluster.local", false},
		{[]string{"admin.internal:9901"}, "10.1.2.3:9901", "admin.internal:9901", true},
		{[]string{"admin.internal:9901"}, "10.1.2.3:9901", "admin.internal:80", false},
		{[]string{"admin.internal:9901"}, "10.1.2.3:9901", "admin.internal", false},
		{[]string{"*.example.com:8443"}, "10.1.2.3:9901", "a.example.com:8443", true},
		{[]string{"*.example.com:8443"}, "10.1.2.3:9901", "a.example.com", false},
		{[]string{"192.0.2.1"}, "10.1.2.3:9901", "192.0.2.1:9901", true},
		{[]string{"[2001:db8::1]:9901"}, "10.1.2.3:9901", "[2001:db8:0::1]:9901", true},
		{[]string{"", " "}, "10.1.2.3:9901", "evil.example", false},
		{[]string{"*"}, "10.1.2.3:9901", "evil.example", true},
	} {
		h := New(s, Options{AllowedHosts: tc.allowed})
		r := httptest.NewRequest("GET", "/ready", nil)
		r.Host = tc.host
		if tc.local != "" {
			ap, err := netipAddrPort(tc.local)
			if err != nil {
				t.Fatal(err)
			}
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, ap))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if got := rec.Code != http.StatusMisdirectedRequest; got != tc.ok {
			t.Errorf("AllowedHosts %q, local %s, Host %q: status %d, want allowed %v; body %q",
				tc.allowed, tc.local, tc.host, rec.Code, tc.ok, rec.Body)
		}
	}
}

// netipAddrPort parses "ip:port" into the *net.TCPAddr that net/http puts
// under http.LocalAddrContextKey.
func netipAddrPort(s string) (net.Addr, error) {
	return net.ResolveTCPAddr("tcp", s) // a literal: no lookup
}

// TestHandler_RefusesBeingServedByItsOwnServer is the regression test for an
// admin handler mounted on the very drainhttp.Server it administers: its
// drain would close the admin port with the rest.
func TestHandler_RefusesBeingServedByItsOwnServer(t *testing.T) {
	s := &drainhttp.Server{DrainTime: time.Minute}
	mux := http.NewServeMux()
	mux.Handle("/", okHandler())
	mux.Handle("/admin/", http.StripPrefix("/admin", New(s, Options{})))
	s.Handler = mux
	at := startAdminTest(t, s, Options{})
	for _, r := range []struct{ method, path string }{{"GET", "/admin/status"}, {"POST", "/admin/drain"}, {"GET", "/admin/"}} {
		req, err := http.NewRequest(r.method, at.url+r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := at.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest ||
			!strings.Contains(string(body), "served by the drainhttp.Server it administers") ||
			!strings.Contains(string(body), "separate listener with a plain http.Server") {
			t.Errorf("%s %s through the administered server: status %d, body %q; want 421 saying where to serve it",
				r.method, r.path, resp.StatusCode, body)
		}
	}
	if st := at.status(); st.Phase != "serving" || !st.Ready {
		t.Errorf("the refused drain changed the server: %+v", st)
	}
	// Served on its own listener, the same handler works.
	at.expect(http.StatusOK, "GET", "/status")
}

func TestHandler_InvalidServerOptionsAnswer500(t *testing.T) {
	s := &drainhttp.Server{DrainTime: -time.Second}
	adm := httptest.NewServer(New(s, Options{Metrics: okHandler()}))
	defer adm.Close()
	client := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
	defer client.CloseIdleConnections()
	for _, r := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 500}, {"GET", "/ready", 500}, {"GET", "/status", 500}, {"POST", "/drain", 500},
		{"POST", "/healthcheck/fail", 500}, {"POST", "/healthcheck/ok", 500}, {"GET", "/metrics", 200},
	} {
		req, _ := http.NewRequest(r.method, adm.URL+r.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.code || (r.code == 500 && !strings.Contains(string(body), "drainhttp: invalid option")) {
			t.Errorf("%s %s: status %d, body %q; want %d (with the option error)", r.method, r.path, resp.StatusCode, body, r.code)
		}
	}
}

func TestHandler_LogsActionsAndRefusals(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	at := startAdminTest(t, &drainhttp.Server{Handler: okHandler(), DrainTime: 100 * time.Millisecond},
		Options{Token: "t", Logger: log})
	at.expect(http.StatusOK, "POST", "/healthcheck/fail", "Authorization", "Bearer t")
	at.expect(http.StatusUnauthorized, "POST", "/healthcheck/ok")
	at.expect(http.StatusMisdirectedRequest, "GET", "/status", "Host", "evil.example")
	at.expect(http.StatusAccepted, "POST", "/drain?strategy=immediate", "Authorization", "Bearer t")
	out := buf.String()
	for _, want := range []string{
		`level=INFO msg="drainhttp/admin: health check failed"`,
		`level=WARN msg="drainhttp/admin: request refused: bad or missing token"`,
		`level=WARN msg="drainhttp/admin: request refused: Host not allowed" host=evil.example`,
		`level=INFO msg="drainhttp/admin: drain requested" strategy=immediate`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
