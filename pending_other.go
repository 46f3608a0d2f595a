//go:build !linux

package drainhttp

import (
	"net"
	"time"
)

// inputPending cannot tell here.
func inputPending(net.Conn) bool { return false }

// receivedWithin cannot tell here.
func receivedWithin(net.Conn, time.Duration) bool { return false }
