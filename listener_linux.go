package drainhttp

import (
	"net"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// noNewConnections is a classic BPF socket filter that drops TCP segments
// opening a connection (SYN set, ACK clear) and passes every other: the
// final ACKs of handshakes in flight, and everything on connections
// already made (which inherit the filter). A socket filter on a TCP socket
// sees the segment from its TCP header: the flags are byte 13.
var noNewConnections = assembleFilter(
	bpf.LoadAbsolute{Off: 13, Size: 1}.Assemble,
	bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x12}.Assemble, // SYN | ACK
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x02, SkipTrue: 1}.Assemble,
	bpf.RetConstant{Val: 0xffffffff}.Assemble, // pass
	bpf.RetConstant{Val: 0}.Assemble,          // drop
)

// assembleFilter assembles a socket filter from its instructions' Assemble
// methods. It takes the methods, not bpf.Instructions as bpf.Assemble
// does, so that no instruction is stored in an interface: the linker then
// leaves out the instructions' String methods (16 KB of a stripped
// binary, measured with bench/binsize.sh).
func assembleFilter(steps ...func() (bpf.RawInstruction, error)) []unix.SockFilter {
	f := make([]unix.SockFilter, len(steps))
	for i, assemble := range steps {
		ins, err := assemble()
		if err != nil {
			panic("drainhttp: assembling the socket filter: " + err.Error()) // caught by the tests
		}
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return f
}

// stopNewConnections makes the kernel stop taking new connections on the
// listening socket l, and leaves its accept queue alone, in two steps:
//
//   - It binds the socket (SO_BINDTODEVICE) to a device that carries none
//     of its traffic (quietDevice), so that a SYN arriving on any other
//     device finds no listener and is refused at once. A handshake already
//     in flight completes: its connection was bound to the device the SYN
//     came in on, when it came.
//   - It attaches noNewConnections: a SYN the quiet device might still
//     bring is dropped, and its retransmit, a second later, meets the
//     closed port.
//
// The binding comes first, and the device is looked up before either: a
// SYN that arrived between the filter and the binding would be dropped and
// wait a second (found behind nginx: 1-4 requests in 2 of 20 rollouts).
// A TCP socket gets both. An MPTCP socket (what net.Listen makes on Linux
// since Go 1.24) takes no socket filter (EOPNOTSUPP) and gets the binding
// alone.
func stopNewConnections(l *net.TCPListener) error {
	rc, err := l.SyscallConn()
	if err != nil {
		return err
	}
	dev, haveDev := quietDevice(l.Addr())
	var serr error
	err = rc.Control(func(fd uintptr) {
		var berr error
		if haveDev {
			berr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
		}
		prog := unix.SockFprog{Len: uint16(len(noNewConnections)), Filter: &noNewConnections[0]}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
		if serr == unix.EOPNOTSUPP {
			serr = berr
			if !haveDev {
				serr = unix.EOPNOTSUPP
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// quietDevice returns a network device through which no connection to
// addr arrives: one that is down, else, for a loopback address, any other
// device. For any other address the loopback device is the best there is:
// remote clients arrive elsewhere and are refused; clients on the same
// host (a sidecar proxy) are dropped by a TCP socket's filter, and on an
// MPTCP socket still accepted, and served, until the listener closes.
func quietDevice(addr net.Addr) (string, bool) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", false
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 {
			return i.Name, true
		}
	}
	ta, _ := addr.(*net.TCPAddr)
	loopback := ta != nil && ta.IP.IsLoopback()
	for _, i := range ifs {
		if (i.Flags&net.FlagLoopback != 0) != loopback {
			return i.Name, true
		}
	}
	return "", false
}

// acceptQueueLen returns how many connections wait in l's accept queue:
// for a listening socket, Linux reports it as TCP_INFO's tcpi_unacked.
func acceptQueueLen(l *net.TCPListener) (int, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var serr error
	err = rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if serr == nil {
			n = int(info.Unacked)
		}
	})
	if err != nil {
		return 0, err
	}
	return n, serr
}
