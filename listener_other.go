//go:build !linux

package drainhttp

import (
	"errors"
	"net"
)

var errNoSocketFilter = errors.New("drainhttp: socket filters need Linux")

// stopNewConnections cannot stop the kernel taking connections on this
// system: the listener is closed at once, as net/http does.
func stopNewConnections(*net.TCPListener) error { return errNoSocketFilter }

func acceptQueueLen(*net.TCPListener) (int, error) { return 0, errNoSocketFilter }
