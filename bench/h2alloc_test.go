// Package bench_test holds the request-path allocation benchmarks of
// bench/allocs.sh: the same handler served on loopback by a plain
// http.Server and by a drainhttp.Server (not draining), loaded by Go's own
// client, one request at a time on one kept-alive connection.
//
//	go test -run '^$' -bench . -benchmem
//
// Each sub-benchmark reports allocs/req: the process's heap allocations
// (client and server together, runtime.MemStats.Mallocs) per request, with
// decimals, since allocs/op is rounded down. The client's share is the same
// for both servers, so drainhttp's cost per request is the difference
// between the drainhttp and nethttp rows.
package bench_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
)

func okHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	return mux
}

// BenchmarkHTTP1 serves HTTP/1.1 requests.
func BenchmarkHTTP1(b *testing.B) { benchProtocols(b, "http1") }

// BenchmarkH2C serves HTTP/2 requests with prior knowledge.
func BenchmarkH2C(b *testing.B) { benchProtocols(b, "h2c") }

// BenchmarkH2 serves HTTP/2 requests over TLS (ALPN).
func BenchmarkH2(b *testing.B) { benchProtocols(b, "h2") }

func benchProtocols(b *testing.B, proto string) {
	for _, server := range []string{"nethttp", "drainhttp"} {
		b.Run(server, func(b *testing.B) { benchServe(b, server, proto) })
	}
}

func benchServe(b *testing.B, server, proto string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sp := new(http.Protocols) // server
	cp := new(http.Protocols) // client
	scheme := "http"
	var cert tls.Certificate
	switch proto {
	case "http1":
		sp.SetHTTP1(true)
		cp.SetHTTP1(true)
	case "h2c":
		sp.SetHTTP1(true)
		sp.SetUnencryptedHTTP2(true)
		cp.SetUnencryptedHTTP2(true)
	case "h2":
		sp.SetHTTP1(true)
		sp.SetHTTP2(true)
		cp.SetHTTP2(true)
		scheme = "https"
		// httptest's certificate, for 127.0.0.1.
		ts := httptest.NewTLSServer(http.NotFoundHandler())
		cert = ts.TLS.Certificates[0]
		ts.Close()
	}
	var tlsConfig *tls.Config
	if scheme == "https" {
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	var closeSrv func() error
	switch server {
	case "nethttp":
		s := &http.Server{Handler: okHandler(), Protocols: sp, TLSConfig: tlsConfig}
		closeSrv = s.Close
		go func() {
			if tlsConfig != nil {
				s.ServeTLS(l, "", "")
			} else {
				s.Serve(l)
			}
		}()
	case "drainhttp":
		s := &drainhttp.Server{Handler: okHandler(), Protocols: sp, TLSConfig: tlsConfig,
			DrainTime: 30 * time.Second, DrainTimeout: 5 * time.Second}
		closeSrv = s.Close
		go func() {
			if tlsConfig != nil {
				s.ServeTLS(l, "", "")
			} else {
				s.Serve(l)
			}
		}()
	}
	defer closeSrv()

	tr := &http.Transport{
		Protocols:          cp,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		DisableCompression: true,
		MaxConnsPerHost:    1,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := scheme + "://" + l.Addr().String() + "/"
	want := "HTTP/1.1"
	if proto != "http1" {
		want = "HTTP/2.0"
	}
	get := func() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Proto != want {
			b.Fatalf("got %s %s, want %s 200", resp.Proto, resp.Status, want)
		}
	}
	for range 10 { // connect, and let both sides reach their steady state
		get()
	}

	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	n := 0
	for b.Loop() {
		get()
		n++
	}
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "allocs/req")
}
