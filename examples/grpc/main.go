// Command grpc serves a gRPC service through drainhttp.Server, so that a
// SIGTERM drains it like any other drainhttp server and no gRPC call fails.
//
// The service is the standard gRPC health service, grpc.health.v1.Health
// (Check, List, and the server-streaming Watch), backed by the server's
// readiness: it answers SERVING until the drain starts and NOT_SERVING during
// it, and Watch streams end when their connection starts draining. Any
// grpc-go service registers the same way.
//
// From the repository root (go run does not pass SIGTERM on to the program,
// so build it, or stop it with Ctrl-C):
//
//	go build -o /tmp/grpc-example ./examples/grpc
//	/tmp/grpc-example -drain-time 5s &
//	grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//	grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Watch
//	curl 127.0.0.1:50051/ready
//	kill -TERM $!           # or Ctrl-C; a second one makes the drain immediate
//
// Flags:
//
//	-addr           h2c (gRPC without TLS) and HTTP/1.1 address
//	                (default 127.0.0.1:50051)
//	-tls-addr       TLS address, h2 via ALPN, with a self-signed certificate
//	                made at start (default: none)
//	-drain-time     drain window (default 10s)
//	-drain-timeout  per-connection hard deadline once told to close
//	                (default 5s)
//
// # Why through net/http
//
// The gRPC server is mounted as the http.Handler (grpc.Server.ServeHTTP), so
// HTTP/2 is Go's, and drainhttp owns the connections: a draining connection
// gets a GOAWAY (from a response's Connection: close, or out of band while
// idle), grpc-go's client finishes its calls on it and reconnects, and the
// listener keeps accepting through the drain window.
//
// grpc.Server.GracefulStop is no substitute in this mode. The ServeHTTP
// transport never owned the connection, so it cannot send a GOAWAY: up to
// grpc-go v1.81.0 its Drain was panic("Drain() is not implemented")
// (internal/transport/handler_server.go, serverHandlerTransport.Drain), so
// GracefulStop panicked as soon as a ServeHTTP call was in flight; from
// v1.82.0 (and in v1.85.0, used here) Drain is ht.Close(err), which cancels
// the call's context at once: GracefulStop aborts in-flight calls rather than
// letting them finish. Either way, leave the stopping to drainhttp: call
// grpc.Server.Stop only once the drain is over, when no call is left.
//
// Bad flags exit 2; a failure to listen or serve exits 1.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/drainhttp/drainhttp"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// config is the parsed command line.
type config struct {
	addr, tlsAddr string
	drainTime     time.Duration
	drainTimeout  time.Duration
}

// parseFlags parses args. Flag errors are already printed, with the usage;
// the others are for the caller to print.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:50051", "h2c and HTTP/1.1 `address`")
	fs.StringVar(&cfg.tlsAddr, "tls-addr", "", "TLS `address` (h2 via ALPN, self-signed certificate); empty means none")
	fs.DurationVar(&cfg.drainTime, "drain-time", 10*time.Second, "drain window")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 5*time.Second, "per-connection deadline once told to close")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case cfg.addr == "":
		return cfg, errors.New("-addr must not be empty")
	case cfg.drainTime < 0:
		return cfg, fmt.Errorf("-drain-time %v is negative", cfg.drainTime)
	case cfg.drainTimeout < 0:
		return cfg, fmt.Errorf("-drain-timeout %v is negative", cfg.drainTimeout)
	}
	return cfg, nil
}

// run is the program; it returns the exit code.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "grpc: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := serve(cfg, logger); err != nil {
		logger.Error("grpc: " + err.Error())
		return 1
	}
	return 0
}

// serve listens, serves until SIGTERM or SIGINT, and drains.
func serve(cfg config, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	var tlsLn net.Listener
	var tlsConf *tls.Config
	if cfg.tlsAddr != "" {
		cert, err := selfSignedCert()
		if err == nil {
			tlsLn, err = net.Listen("tcp", cfg.tlsAddr)
		}
		if err != nil {
			ln.Close()
			return err
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}}
	}

	s, gs := newServer(tlsConf, logger)
	s.DrainTime = cfg.drainTime
	s.DrainTimeout = cfg.drainTimeout
	// Every call has ended once the drain is over; Stop releases the gRPC
	// server's resources. (Not GracefulStop: see the package comment.)
	defer gs.Stop()

	attrs := []any{"addr", ln.Addr().String()}
	serveFns := []func() error{func() error { return s.Serve(ln) }}
	if tlsLn != nil {
		attrs = append(attrs, "tls_addr", tlsLn.Addr().String())
		serveFns = append(serveFns, func() error { return s.ServeTLS(tlsLn, "", "") })
	}
	attrs = append(attrs, "drain_time", cfg.drainTime.String(), "drain_timeout", cfg.drainTimeout.String())
	logger.Info("grpc: listening", attrs...)
	if err := s.ServeUntilSignal(serveFns...); err != nil {
		return err
	}
	logger.Info("grpc: drained, exiting")
	return nil
}

// newServer returns a drainhttp.Server serving a gRPC server with the health
// service, over h2c and HTTP/1.1, and over TLS (h2 and HTTP/1.1 via ALPN)
// for ServeTLS if tlsConf is not nil. The caller sets the drain options
// before serving. opts are the gRPC server's (tests add interceptors).
func newServer(tlsConf *tls.Config, logger *slog.Logger, opts ...grpc.ServerOption) (*drainhttp.Server, *grpc.Server) {
	var protos http.Protocols
	protos.SetHTTP1(true)            // /ready, and TLS clients that do not offer h2
	protos.SetHTTP2(true)            // h2 over TLS, via ALPN
	protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge: grpc-go's insecure client
	s := &drainhttp.Server{
		Protocols:         &protos,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		Logger:            logger,
	}
	gs := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(gs, &healthService{ready: s.Ready})
	s.Handler = routes(gs, s.ReadyHandler())
	return s, gs
}

// routes sends gRPC requests (HTTP/2, Content-Type application/grpc...) to
// gs and serves /ready, the readiness probe, to everything else.
func routes(gs *grpc.Server, ready http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ready", ready)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// selfSignedCert makes a certificate for localhost, 127.0.0.1 and ::1,
// valid for a day, in memory.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "drainhttp gRPC example"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
