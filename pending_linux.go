package drainhttp

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// inputPending reports whether bytes from the peer wait, unread, in nc's
// socket: a request that has arrived, which net/http has not read yet.
func inputPending(nc net.Conn) bool {
	sc, ok := rawConn(nc).(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}
