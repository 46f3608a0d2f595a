package drainhttp

import (
	"math/rand/v2"
	"time"
)

// Clock is the time source of a Manager and a Server. Tests inject one to
// control time; the default is the real clock (time.Now, time.AfterFunc),
// which testing/synctest also controls.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc waits for d and then calls f in its own goroutine, like
	// time.AfterFunc. It must not start a goroutine while waiting.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call made by Clock.AfterFunc.
type Timer interface {
	// Stop prevents the call from running. It reports whether it did so,
	// false meaning the call already ran or was already stopped.
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// defaultRand is math/rand/v2's global generator: safe for concurrent use and
// allocation free.
func defaultRand() float64 { return rand.Float64() }
