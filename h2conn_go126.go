//go:build !(go1.27 && !http2legacy)

package drainhttp

import (
	"context"
	"net/http"

	"golang.org/x/net/http2"
)

// x/net's own HTTP/2 server (x/net http2/server.go). It reads all its
// settings from BaseConfig and keeps its connection registry in the
// http2.Server, whose graceful shutdown ConfigureServer registered on the
// dummy. So the dummy stays bare and BaseConfig is the outer server itself,
// as net/http's bundled copy does on Go 1.26: ConnState, ReadTimeout,
// WriteTimeout, MaxHeaderBytes, ErrorLog, HTTP2, DisableClientPriority,
// SetKeepAlivesEnabled and the request's ServerContextKey are all srv's.

func newH2Dummy(*http.Server) *http.Server { return new(http.Server) }

func h2ServeOpts(srv *http.Server, ctx context.Context, h http.Handler, sawPreface bool) *http2.ServeConnOpts {
	return &http2.ServeConnOpts{
		Context:          ctx,
		Handler:          h,
		BaseConfig:       srv,
		SawClientPreface: sawPreface,
	}
}
