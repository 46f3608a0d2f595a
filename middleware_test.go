package drainhttp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/justinas/alice"
)

func TestMiddleware_ClosesConnectionsOnceTheDecisionFires(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "http/1.1", true: "h2 (net/http's own server)"}[h2]
		t.Run(name, func(t *testing.T) {
			var drain atomic.Bool
			chain := alice.New(Middleware(DecisionFunc(drain.Load)))
			srv := httptest.NewUnstartedServer(chain.ThenFunc(okHandler))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			c := srv.Client()
			c.Timeout = testTimeout

			get(t, c, srv.URL)
			if _, reused := get(t, c, srv.URL); !reused {
				t.Fatal("keep-alive connection not reused before the decision fired")
			}
			drain.Store(true)
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if !h2 && !resp.Close {
				t.Fatal("HTTP/1.1 response while draining does not close the connection")
			}
			if h2 && resp.ProtoMajor != 2 {
				t.Fatalf("got %s, want HTTP/2", resp.Proto)
			}
			drain.Store(false)
			if _, reused := get(t, c, srv.URL); reused {
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

func TestMiddleware_LeavesUpgradeAndConnectAlone(t *testing.T) {
	h := Middleware(DecisionFunc(func() bool { return true }))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, r := range []*http.Request{
		{Method: "GET", Header: http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}},
		{Method: "CONNECT", Header: http.Header{}},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r.WithContext(context.Background()))
		if got := w.Header().Get("Connection"); got != "" {
			t.Errorf("%s %v: Connection: %q", r.Method, r.Header, got)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if got := w.Header().Get("Connection"); got != "close" {
		t.Errorf("plain GET while draining: Connection: %q, want close", got)
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

func TestMiddleware_OnAServerCountsOneGoAwayPerConnectionItCloses(t *testing.T) {
	var calls atomic.Uint64
	d := DecisionFunc(func() bool { calls.Add(1); return true })
	ts := startServer(t, &Server{Handler: Middleware(d)(http.HandlerFunc(okHandler)), DrainTimeout: time.Hour})
	c, url := ts.client("h2c")
	for range 3 {
		get(t, c, url)
	}
	// The GOAWAY waits for the connection to be h2MinAge old.
	waitFor(t, "the GOAWAY", func() bool { return ts.s.Stats().GoAways == calls.Load() })
	c.Transport.(*http.Transport).CloseIdleConnections()
	waitFor(t, "the connections to close", func() bool { return ts.s.Stats().OpenTotal == 0 })
	st := ts.s.Stats()
	if st.GoAways != calls.Load() || st.Drained["decision"] != calls.Load() || st.Accepted != calls.Load() {
		t.Fatalf("decision fired %d times; stats %+v: want one connection, one GOAWAY and one drain close each", calls.Load(), st)
	}
}
