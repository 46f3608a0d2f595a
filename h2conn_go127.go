//go:build go1.27 && !http2legacy

package drainhttp

import (
	"context"
	"net/http"

	"golang.org/x/net/http2"
)

// x/net's server wraps net/http's (x/net http2/server_wrap.go): ConfigureServer
// attaches net/http's internal HTTP/2 server to the dummy, and ServeConn with
// a nil BaseConfig serves the connection through that dummy, so
// dummy.Shutdown reaches it. A non-nil BaseConfig would be copied into a
// one-off http.Server and dummy.Shutdown would silently do nothing. So the
// dummy must carry every setting net/http's HTTP/2 server reads from its
// http.Server. TLSConfig is left out on purpose: ConfigureServer mutates it.
// BaseContext and ConnContext are never called on the dummy (it never
// accepts); the connection's context comes from the outer server.

func newH2Dummy(srv *http.Server) *http.Server {
	return &http.Server{
		ReadTimeout:           srv.ReadTimeout,
		ReadHeaderTimeout:     srv.ReadHeaderTimeout,
		WriteTimeout:          srv.WriteTimeout,
		IdleTimeout:           srv.IdleTimeout,
		MaxHeaderBytes:        srv.MaxHeaderBytes,
		MaxHeaderValueCount:   srv.MaxHeaderValueCount,
		ConnState:             srv.ConnState,
		ErrorLog:              srv.ErrorLog,
		BaseContext:           srv.BaseContext,
		ConnContext:           srv.ConnContext,
		HTTP2:                 srv.HTTP2,
		DisableClientPriority: srv.DisableClientPriority,
	}
}

func h2ServeOpts(srv *http.Server, ctx context.Context, h http.Handler, sawPreface bool) *http2.ServeConnOpts {
	return &http2.ServeConnOpts{
		Context:          ctx,
		Handler:          serverContextHandler{h, srv},
		SawClientPreface: sawPreface,
	}
}

// serverContextHandler restores http.ServerContextKey, which x/net's wrapper
// overwrites with a fresh, empty *http.Server when BaseConfig is nil
// (net/http's logf reads ErrorLog from it, net/http/pprof WriteTimeout).
type serverContextHandler struct {
	h   http.Handler
	srv *http.Server
}

func (s serverContextHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), http.ServerContextKey, s.srv)))
}
