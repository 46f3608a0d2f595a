package drainhttp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// adminTimeout bounds every wait in these tests.
const adminTimeout = 10 * time.Second

// adminTest is a Server serving on 127.0.0.1:0 and its AdminHandler served
// by an httptest.Server.
type adminTest struct {
	t      *testing.T
	s      *Server
	url    string // the drained server
	admin  string // the admin handler
	client *http.Client
	served chan error // Serve's result
}

// startAdminTest serves s and s.AdminHandler(opts). Cleanup drains s (which
// also waits for a drain started through the handler), closes the admin
// server and checks that Serve returned http.ErrServerClosed.
func startAdminTest(t *testing.T, s *Server, opts AdminOptions) *adminTest {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	at := &adminTest{
		t:      t,
		s:      s,
		url:    "http://" + l.Addr().String(),
		client: &http.Client{Transport: &http.Transport{}, Timeout: adminTimeout},
		served: make(chan error, 1),
	}
	go func() { at.served <- s.Serve(l) }()
	adm := httptest.NewServer(s.AdminHandler(opts))
	at.admin = adm.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := s.Drain(ctx); err != nil {
			t.Errorf("Drain in cleanup: %v", err)
		}
		select {
		case err := <-at.served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		case <-time.After(adminTimeout):
			t.Error("Serve did not return after Drain")
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

// decodeAdminStatus parses an AdminStatus and checks the fields that must be
// there whatever the state.
func decodeAdminStatus(t *testing.T, body string) AdminStatus {
	t.Helper()
	var st AdminStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, body)
	}
	if st.Connections.Open == nil || st.Connections.Drained == nil || st.Now.IsZero() {
		t.Fatalf("status lacks connections or now:\n%s", body)
	}
	return st
}

func (at *adminTest) status() AdminStatus {
	at.t.Helper()
	return decodeAdminStatus(at.t, at.expect(http.StatusOK, "GET", "/status"))
}

// waitState polls /status until its state is want.
func (at *adminTest) waitState(want string) AdminStatus {
	at.t.Helper()
	deadline := time.Now().Add(adminTimeout)
	for {
		st := at.status()
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			at.t.Fatalf("state is still %q, want %q", st.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func adminOKHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
}

func TestAdminHandler_RoutesMethodsAndUnknownPaths(t *testing.T) {
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: 100 * time.Millisecond}, AdminOptions{})
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
	if st := at.status(); st.State != "serving" {
		t.Errorf("state %q after non-mutating requests, want serving", st.State)
	}
}

func TestAdminHandler_StatusWhileServing(t *testing.T) {
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: 100 * time.Millisecond, Strategy: Immediate},
		AdminOptions{})
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
	st := decodeAdminStatus(t, body)
	want := AdminStatus{
		State: "serving", Ready: true, Strategy: "immediate",
		DrainTime: "100ms", DrainTimeout: "5s", ShutdownDelay: "0s", Listeners: 1,
	}
	if st.State != want.State || st.Ready != want.Ready || st.HealthCheckFailed || st.Strategy != want.Strategy ||
		st.DrainTime != want.DrainTime || st.DrainTimeout != want.DrainTimeout ||
		st.ShutdownDelay != want.ShutdownDelay || st.Listeners != want.Listeners || st.Progress != 0 {
		t.Errorf("status:\n%s\nwant the fields of %+v", body, want)
	}
	// The server may not have marked the connection idle yet when the
	// client has read the response.
	h1 := st.Connections.Open["http/1.1"]
	if st.Connections.Accepted != 1 || st.Connections.OpenTotal != 1 || h1["idle"]+h1["active"] != 1 {
		t.Errorf("connections %+v, want 1 accepted, 1 open HTTP/1.1", st.Connections)
	}
	// Before a drain the window fields are null, not zero times.
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"started", "deadline", "time_left_seconds"} {
		if v, ok := raw[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
}

func TestAdminHandler_HealthCheckFailAndOK(t *testing.T) {
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: 100 * time.Millisecond}, AdminOptions{})
	at.expect(http.StatusOK, "GET", "/ready")

	st := decodeAdminStatus(t, at.expect(http.StatusOK, "POST", "/healthcheck/fail"))
	if !st.HealthCheckFailed || st.Ready || st.State != "serving" {
		t.Errorf("after fail: %+v, want health check failed, not ready, serving", st)
	}
	if body := at.expect(http.StatusServiceUnavailable, "GET", "/ready"); body != "draining\n" {
		t.Errorf("/ready body %q after fail", body)
	}
	at.expect(http.StatusOK, "POST", "/healthcheck/fail") // twice is harmless

	st = decodeAdminStatus(t, at.expect(http.StatusOK, "POST", "/healthcheck/ok"))
	if st.HealthCheckFailed || !st.Ready {
		t.Errorf("after ok: %+v, want health check passing, ready", st)
	}
	at.expect(http.StatusOK, "GET", "/ready")
}

func TestAdminHandler_TokenGuardsPOSTOnly(t *testing.T) {
	const token = "s3cret-token"
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: 100 * time.Millisecond},
		AdminOptions{Token: token})
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
	st := decodeAdminStatus(t, at.expect(http.StatusOK, "POST", "/healthcheck/fail", "Authorization", "bearer "+token))
	if !st.HealthCheckFailed {
		t.Error("authorized /healthcheck/fail did not fail the health check")
	}
	at.expect(http.StatusOK, "POST", "/healthcheck/ok", "Authorization", "Bearer "+token)
	// The method check comes first: a GET on a POST endpoint is 405, not 401.
	at.expect(http.StatusMethodNotAllowed, "GET", "/drain")
}

func TestAdminHandler_DrainRejectsUnknownStrategy(t *testing.T) {
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: 100 * time.Millisecond}, AdminOptions{})
	for _, q := range []string{"fast", "Immediate", "0"} {
		body := at.expect(http.StatusBadRequest, "POST", "/drain?strategy="+q)
		if !strings.Contains(body, "drainhttp:") || !strings.Contains(body, `"`+q+`"`) ||
			!strings.Contains(body, "want gradual or immediate") {
			t.Errorf("strategy=%s: body %q, want a drainhttp: error naming the value and the choices", q, body)
		}
	}
	if st := at.status(); st.State != "serving" || !st.Ready {
		t.Errorf("a rejected drain changed the server: %+v", st)
	}
}

func TestAdminHandler_DrainIsIdempotentAndImmediateCutsItShort(t *testing.T) {
	const drainTime = 3 * time.Second // long: the immediate drain must cut it short
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: drainTime}, AdminOptions{})

	resp, body := at.do("POST", "/drain")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /drain: status %d, want 202; body %q", resp.StatusCode, body)
	}
	decodeAdminStatus(t, body)
	first := at.waitState("draining")
	if first.Ready || first.Strategy != "gradual" || first.Started == nil || first.Deadline == nil ||
		first.TimeLeftSeconds == nil || *first.TimeLeftSeconds <= 0 || *first.TimeLeftSeconds > drainTime.Seconds() {
		t.Fatalf("draining status: %+v", first)
	}
	if got := first.Deadline.Sub(*first.Started); got != drainTime {
		t.Errorf("window %v, want %v", got, drainTime)
	}
	at.expect(http.StatusServiceUnavailable, "GET", "/ready")

	// A second gradual request does not restart the window.
	second := decodeAdminStatus(t, at.expect(http.StatusAccepted, "POST", "/drain?strategy=gradual"))
	if second.Started == nil || !second.Started.Equal(*first.Started) || !second.Deadline.Equal(*first.Deadline) {
		t.Errorf("second POST /drain moved the window: %v..%v, was %v..%v",
			second.Started, second.Deadline, first.Started, first.Deadline)
	}

	// An immediate one ends it now.
	cut := time.Now()
	at.expect(http.StatusAccepted, "POST", "/drain?strategy=immediate")
	st := at.waitState("drained")
	if took := time.Since(cut); took > drainTime/2 {
		t.Errorf("immediate drain took %v", took)
	}
	if st.Strategy != "immediate" || st.Progress != 1 || st.Ready || st.Listeners != 0 ||
		st.TimeLeftSeconds == nil || *st.TimeLeftSeconds != 0 {
		t.Errorf("drained status: %+v", st)
	}
	select {
	case err := <-at.served:
		at.served <- err // for the cleanup's check
	case <-time.After(adminTimeout):
		t.Fatal("Serve did not return after the drain")
	}
	// The admin handler still answers, and further drains are harmless.
	at.expect(http.StatusAccepted, "POST", "/drain")
	at.expect(http.StatusAccepted, "POST", "/drain?strategy=immediate")
	if st := at.status(); st.State != "drained" {
		t.Errorf("state %q after repeated drains, want drained", st.State)
	}
}

func TestAdminHandler_ShutdownDelayState(t *testing.T) {
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: 100 * time.Millisecond, ShutdownDelay: time.Minute},
		AdminOptions{})
	at.expect(http.StatusAccepted, "POST", "/drain")
	st := at.waitState("shutdown_delay")
	if st.Ready || st.Started != nil || st.Progress != 0 || st.ShutdownDelay != "1m0s" {
		t.Errorf("shutdown_delay status: %+v", st)
	}
	at.expect(http.StatusServiceUnavailable, "GET", "/ready")
	// Immediate skips the rest of the delay.
	at.expect(http.StatusAccepted, "POST", "/drain?strategy=immediate")
	at.waitState("drained")
}

func TestAdminHandler_ClosingStateAndForcedConnection(t *testing.T) {
	entered := make(chan struct{}, 1)
	blocking := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done() // a stuck request: only the drain deadline ends it
	})
	at := startAdminTest(t, &Server{Handler: blocking, DrainTime: 50 * time.Millisecond, DrainTimeout: 500 * time.Millisecond},
		AdminOptions{})
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
	case <-time.After(adminTimeout):
		t.Fatal("request did not reach the handler")
	}
	at.expect(http.StatusAccepted, "POST", "/drain")
	st := at.waitState("closing")
	if st.Listeners != 0 || st.Connections.OpenTotal != 1 || st.Progress != 1 {
		t.Errorf("closing status: %+v", st)
	}
	st = at.waitState("drained")
	if st.Connections.Forced != 1 || st.Connections.OpenTotal != 0 {
		t.Errorf("drained status: %+v, want 1 forced connection and none open", st.Connections)
	}
	select {
	case err := <-reqDone:
		if err == nil {
			t.Error("the stuck request succeeded, want an error from the forced close")
		}
	case <-time.After(adminTimeout):
		t.Fatal("the stuck request did not end")
	}
}

func TestAdminHandler_MetricsHandler(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up 1\n") })
	at := startAdminTest(t, &Server{Handler: adminOKHandler()}, AdminOptions{Metrics: metrics})
	if body := at.expect(http.StatusOK, "GET", "/metrics"); body != "up 1\n" {
		t.Errorf("/metrics body %q", body)
	}
	resp, _ := at.do("POST", "/metrics")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics: status %d, Allow %q; want 405, GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestAdminHandler_RejectsCrossOriginBrowserPOST(t *testing.T) {
	at := startAdminTest(t, &Server{Handler: adminOKHandler(), DrainTime: 100 * time.Millisecond}, AdminOptions{})
	at.expect(http.StatusForbidden, "POST", "/drain", "Sec-Fetch-Site", "cross-site")
	at.expect(http.StatusForbidden, "POST", "/healthcheck/fail", "Origin", "https://evil.example")
	if st := at.status(); st.State != "serving" || st.HealthCheckFailed {
		t.Errorf("cross-origin requests changed the server: %+v", st)
	}
	// Same-origin browser requests pass.
	at.expect(http.StatusOK, "POST", "/healthcheck/fail", "Sec-Fetch-Site", "same-origin")
}

func TestAdminHandler_InvalidServerOptionsAnswer500(t *testing.T) {
	s := &Server{DrainTime: -time.Second}
	adm := httptest.NewServer(s.AdminHandler(AdminOptions{}))
	defer adm.Close()
	client := &http.Client{Transport: &http.Transport{}, Timeout: adminTimeout}
	defer client.CloseIdleConnections()
	for _, r := range []struct{ method, path string }{
		{"GET", "/ready"}, {"GET", "/status"}, {"POST", "/drain"}, {"POST", "/healthcheck/fail"},
	} {
		req, _ := http.NewRequest(r.method, adm.URL+r.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "drainhttp: invalid option") {
			t.Errorf("%s %s: status %d, body %q; want 500 with the option error", r.method, r.path, resp.StatusCode, body)
		}
	}
}

// ExampleServer_AdminHandler serves the admin endpoints on a private
// listener, next to the drained public one. The admin server is a plain
// http.Server, so it keeps answering during the drain; it is shut down once
// the drain is over.
func ExampleServer_AdminHandler() {
	s := &Server{
		Addr:      ":8080",
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") }),
		DrainTime: 30 * time.Second,
	}
	admin := &http.Server{
		Addr:              "127.0.0.1:9901",
		Handler:           s.AdminHandler(AdminOptions{Token: "change-me"}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go admin.ListenAndServe()

	// Drains on SIGTERM, or on: curl -XPOST -H 'Authorization: Bearer change-me' 127.0.0.1:9901/drain
	err := s.ListenAndServeUntilSignal()
	admin.Shutdown(context.Background())
	if err != nil {
		slog.Error("serving failed", "err", err)
	}
}
