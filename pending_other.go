//go:build !linux

package drainhttp

import "net"

// inputPending cannot tell here.
func inputPending(net.Conn) bool { return false }
