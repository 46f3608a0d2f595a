// Package drainhttp gives net/http servers Envoy-grade connection draining.
package drainhttp

import (
	"context"
	"errors"
)

// ErrInvalidOption is wrapped by every error about a bad option or argument
// reported at construction: a negative duration, a fraction out of range,
// an unknown strategy, a nil handler or decision.
var ErrInvalidOption = errors.New("drainhttp: invalid option")

// Draining returns a channel that is closed when the connection of the
// request whose context is ctx starts draining, so that a long-lived handler
// (server-sent events, long poll, WebSocket) can finish its work and return
// before the connection's deadline. It returns nil, a channel that never
// closes, if the request is not served by a Server.
func Draining(ctx context.Context) <-chan struct{} {
	if c := connFromContext(ctx); c != nil {
		return c.drainingChan()
	}
	return nil
}
