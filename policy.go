package drainhttp

import (
	"fmt"
	"time"
)

// DefaultMaxConnectionAgeJitter spreads connection ages by ±10 %, as
// grpc-go does, so that connections opened together (after a deploy) do not
// all end together.
const DefaultMaxConnectionAgeJitter = 0.1

// MaxGoAwayChance is the largest GoAwayChance accepted: kube-apiserver's
// --goaway-chance limit. More would churn connections for little balance.
const MaxGoAwayChance = 0.02

// ConnPolicy ends connections in everyday operation, not only during a
// drain, to keep load balanced and connections fresh. Every policy ends a
// connection the way a drain does: Connection: close on HTTP/1.1, GOAWAY on
// HTTP/2, then a deadline. The zero value applies no policy.
//
// A Server applies its own ConnPolicy to every listener; WithPolicy
// overrides it for one listener.
type ConnPolicy struct {
	// MaxConnectionAge ends a connection once it is this old (plus or
	// minus MaxConnectionAgeJitter). Zero means no limit; negative is an
	// error. grpc-go: MaxConnectionAge; Envoy: max_connection_duration.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeJitter is the fraction by which each connection's
	// age limit is moved, uniformly at random, up or down. Zero means
	// DefaultMaxConnectionAgeJitter (±10 %); it must be in [0, 1).
	MaxConnectionAgeJitter float64
	// MaxConnectionAgeGrace is the deadline of a connection ended by
	// MaxConnectionAge: after it, the connection is closed whatever it is
	// doing. Zero means the server's DrainTimeout; negative is an error.
	// grpc-go: MaxConnectionAgeGrace.
	MaxConnectionAgeGrace time.Duration
	// MaxRequestsPerConnection ends a connection with the response to its
	// Nth request. Zero means no limit; negative is an error. Envoy:
	// max_requests_per_connection.
	MaxRequestsPerConnection int64
	// GoAwayChance is the probability that a request on an HTTP/2
	// connection ends its connection, so that long-lived clients spread
	// out over the replicas behind a load balancer. Zero means never; it
	// must be in [0, MaxGoAwayChance]. kube-apiserver: --goaway-chance.
	GoAwayChance float64
	// GoAwayChanceHTTP1 applies GoAwayChance to HTTP/1.1 connections too.
	GoAwayChanceHTTP1 bool
}

func (p ConnPolicy) validate() error {
	switch {
	case p.MaxConnectionAge < 0:
		return fmt.Errorf("%w: MaxConnectionAge %v is negative", ErrInvalidOption, p.MaxConnectionAge)
	case !(p.MaxConnectionAgeJitter >= 0 && p.MaxConnectionAgeJitter < 1): // NaN too
		return fmt.Errorf("%w: MaxConnectionAgeJitter %v is outside [0, 1)", ErrInvalidOption, p.MaxConnectionAgeJitter)
	case p.MaxConnectionAgeGrace < 0:
		return fmt.Errorf("%w: MaxConnectionAgeGrace %v is negative", ErrInvalidOption, p.MaxConnectionAgeGrace)
	case p.MaxRequestsPerConnection < 0:
		return fmt.Errorf("%w: MaxRequestsPerConnection %d is negative", ErrInvalidOption, p.MaxRequestsPerConnection)
	case !(p.GoAwayChance >= 0 && p.GoAwayChance <= MaxGoAwayChance):
		return fmt.Errorf("%w: GoAwayChance %v is outside [0, %v]", ErrInvalidOption, p.GoAwayChance, MaxGoAwayChance)
	}
	return nil
}

// normalize fills in defaults; drainTimeout is the server's.
func (p ConnPolicy) normalize(drainTimeout time.Duration) ConnPolicy {
	if p.MaxConnectionAgeJitter == 0 {
		p.MaxConnectionAgeJitter = DefaultMaxConnectionAgeJitter
	}
	if p.MaxConnectionAgeGrace == 0 {
		p.MaxConnectionAgeGrace = drainTimeout
	}
	return p
}

// age returns a connection's age limit for a random number u in [0, 1).
func (p *ConnPolicy) age(u float64) time.Duration {
	return time.Duration(float64(p.MaxConnectionAge) * (1 + p.MaxConnectionAgeJitter*(2*u-1)))
}
