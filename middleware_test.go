package drainhttp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync/atomic"
	"testing"

	"github.com/justinas/alice"
)

// getReused GETs url and reports whether the connection was reused.
func getReused(t *testing.T, c *http.Client, url string) (resp *http.Response, reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, reused
}

// TestMiddleware_ClosesConnectionsOnceTheDecisionFires on a plain
// http.Server in an alice chain, over HTTP/1.1 and net/http's own HTTP/2.
func TestMiddleware_ClosesConnectionsOnceTheDecisionFires(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http/1.1", true: "h2"}[h2], func(t *testing.T) {
			var drain atomic.Bool
			chain := alice.New(Middleware(DecisionFunc(drain.Load)))
			srv := httptest.NewUnstartedServer(chain.Then(okHandler()))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			c := srv.Client()
			getReused(t, c, srv.URL)
			if _, reused := getReused(t, c, srv.URL); !reused {
				t.Fatal("keep-alive connection not reused before the decision fired")
			}
			drain.Store(true)
			resp, _ := getReused(t, c, srv.URL)
			if !h2 && !resp.Close {
				t.Fatal("HTTP/1.1 response while draining does not close the connection")
			}
			drain.Store(false)
			if _, reused := getReused(t, c, srv.URL); reused {
				t.Fatal("the connection told to close was reused")
			}
			c.CloseIdleConnections()
		})
	}
}

func TestMiddleware_HandsTheHandlerTheSameResponseWriter(t *testing.T) {
	for _, drain := range []bool{false, true} {
		var outer, inner http.ResponseWriter
		h := Middleware(DecisionFunc(func() bool { return drain }))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inner = w
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush through the middleware: %v", err)
			}
			if _, ok := w.(http.Hijacker); !ok {
				t.Error("Hijacker lost")
			}
			if _, ok := w.(io.ReaderFrom); !ok {
				t.Error("io.ReaderFrom lost")
			}
		}))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			outer = w
			h.ServeHTTP(w, r)
		}))
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if inner != outer {
			t.Fatalf("drain=%v: the middleware wrapped the ResponseWriter", drain)
		}
	}
}

func TestMiddleware_LeavesHTTP1UpgradeAndConnectAlone(t *testing.T) {
	h := Middleware(DecisionFunc(func() bool { return true }))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, r := range []*http.Request{
		{Method: "GET", ProtoMajor: 1, Header: http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}},
		{Method: "GET", ProtoMajor: 1, Header: http.Header{"Connection": {"keep-alive", "\tUPGRADE "}, "Upgrade": {"websocket"}}},
		{Method: "CONNECT", ProtoMajor: 1, Header: http.Header{}},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r.WithContext(context.Background()))
		if got := w.Header().Get("Connection"); got != "" {
			t.Errorf("%s %v: Connection: %q", r.Method, r.Header, got)
		}
	}
	for _, conn := range []string{"", "keep-alive", "upgraded, x-upgrade"} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Connection", conn)
		h.ServeHTTP(w, r)
		if got := w.Header().Get("Connection"); got != "close" {
			t.Errorf("GET with Connection %q while draining: Connection: %q, want close", conn, got)
		}
	}
}

func TestMiddleware_TreatsNilHandlerAsDefaultServeMux(t *testing.T) {
	h := Middleware(DecisionFunc(func() bool { return false }))(nil)
	if h.(*middleware).next != http.DefaultServeMux {
		t.Fatal("nil handler is not http.DefaultServeMux")
	}
}

func TestMiddleware_PanicsOnNilDecision(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Middleware(nil) did not panic")
		}
	}()
	Middleware(nil)
}
