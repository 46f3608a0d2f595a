// Package drainhttp gives net/http servers Envoy-grade connection draining.
package drainhttp

import "errors"

// ErrInvalidOption is wrapped by every error about a bad option or argument
// reported at construction: a negative duration, a fraction out of range,
// an unknown strategy, a nil handler or decision.
var ErrInvalidOption = errors.New("drainhttp: invalid option")
