package drainhttp

import "fmt"

// Decision answers one question, asked once per request: should the
// connection this request arrived on be closed now? A true answer makes the
// middleware end the connection gracefully (Connection: close on HTTP/1.1,
// GOAWAY on HTTP/2).
//
// DrainClose is called on the request path, so implementations must be safe
// for concurrent use and cheap. It is Envoy's Network::DrainDecision
// (drainClose()).
type Decision interface {
	DrainClose() bool
}

// DecisionFunc adapts an ordinary function to the Decision interface.
// DecisionFunc(f).DrainClose() calls f.
type DecisionFunc func() bool

// DrainClose calls f.
func (f DecisionFunc) DrainClose() bool { return f() }

// Any returns the union of ds: its DrainClose is true as soon as one of them
// answers true, asking them in order and stopping at the first true. This is
// Envoy's rule for a listener, whose decision is its own drain manager's
// united with the server-wide one.
//
// Any with no decisions never drains. A nil entry is reported as an error
// wrapping ErrInvalidOption rather than panicking on the request path later.
func Any(ds ...Decision) (Decision, error) {
	for i, d := range ds {
		if d == nil {
			return nil, fmt.Errorf("%w: Any: decision %d is nil", ErrInvalidOption, i)
		}
	}
	if len(ds) == 1 {
		return ds[0], nil
	}
	return anyDecision(append([]Decision(nil), ds...)), nil
}

type anyDecision []Decision

func (a anyDecision) DrainClose() bool {
	for _, d := range a {
		if d.DrainClose() {
			return true
		}
	}
	return false
}
