package drainhttp

import (
	"fmt"
	"net/http"
	"testing"
)

func TestSmoke(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil)
	})}
	ts := startServer(t, s)
	for _, p := range testProtos {
		c, u := ts.client(p)
		t.Logf("%s: %s", p, get(t, c, u))
	}
	t.Logf("%+v", s.Stats())
}
