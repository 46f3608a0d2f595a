package drainhttp

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// inputPending reports whether bytes from the peer wait, unread, in nc's
// socket: a request that has arrived, which net/http has not read yet.
func inputPending(nc net.Conn) bool {
	n := 0
	control(nc, func(fd int) { n, _ = unix.IoctlGetInt(fd, unix.SIOCINQ) })
	return n > 0
}

// receivedWithin reports whether nc's socket received data from the peer
// less than d ago (TCP_INFO's tcpi_last_data_recv, in milliseconds): bytes
// that net/http may have read already without having a whole request yet,
// which it still reports as idle.
func receivedWithin(nc net.Conn, d time.Duration) bool {
	recent := false
	control(nc, func(fd int) {
		if info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			recent = time.Duration(info.Last_data_recv)*time.Millisecond < d
		}
	})
	return recent
}

// control calls f with the descriptor of nc's socket (the one under a TLS
// connection), if nc has a socket.
func control(nc net.Conn, f func(fd int)) {
	sc, ok := rawConn(nc).(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { f(int(fd)) })
}
