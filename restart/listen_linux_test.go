//go:build linux

package restart

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cloudflare/tableflip"
	"github.com/drainhttp/drainhttp"
)

// socketFilterLen returns the number of instructions of the classic BPF
// filter attached to the socket under rc, 0 if none: Linux's
// getsockopt(SO_GET_FILTER) given no buffer answers just that.
func socketFilterLen(t *testing.T, rc syscall.RawConn) int {
	t.Helper()
	var n uint32 // socklen_t
	var errno syscall.Errno
	err := rc.Control(func(fd uintptr) {
		const soGetFilter = syscall.SO_ATTACH_FILTER // the same option number
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, soGetFilter,
			0, uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if errno != 0 {
		t.Fatalf("getsockopt(SO_GET_FILTER): %v", errno)
	}
	return int(n)
}

func rawConn(t *testing.T, c syscall.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestListen_SystemdSocketsAreNeverFilteredByTheDrain drains a Server on
// three listeners from Listen, each a socket another holder keeps (the test
// holds a descriptor of each): one systemd passed, one the parent had from
// systemd, and, as the control, one Listen made. The drain stops new
// connections on a socket of its own with a socket filter before it closes
// it; on systemd's that filter would outlive the process, so they must come
// out of the drain unfiltered and still taking connections.
func TestListen_SystemdSocketsAreNeverFilteredByTheDrain(t *testing.T) {
	held := func() (*net.TCPListener, *os.File) {
		l, err := listen("tcp", "127.0.0.1:0") // systemd's sockets are plain TCP
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		return l.(*net.TCPListener), f
	}
	systemd, sdFile := held()           // New closes sdFile
	parentSystemd, parentFile := held() // passed on by the parent
	inherited, err := net.FileListener(parentFile)
	parentFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	var own *os.File // the test's descriptor of the socket Listen makes
	defer func() {
		if own != nil {
			own.Close()
		}
	}()

	fu := newFakeUpgrader()
	fu.inherit[[2]string{"systemd:tcp", parentSystemd.Addr().String()}] = inherited
	r, err := newRestarter(Options{}, env{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return []*os.File{sdFile} },
		listen: func(network, addr string) (net.Listener, error) {
			l, err := listen(network, addr)
			if err == nil {
				own, err = l.(*net.TCPListener).File()
			}
			return l, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	var lns []net.Listener
	for _, addr := range []string{systemd.Addr().String(), parentSystemd.Addr().String(), "127.0.0.1:0"} {
		ln, err := r.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}

	s := &drainhttp.Server{Handler: http.HandlerFunc(okHandler)}
	served := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { served <- s.Serve(ln) }()
	}
	<-r.Serving()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	for range lns {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	}

	if n := socketFilterLen(t, rawConn(t, own)); n == 0 {
		t.Skip("the drain attached no socket filter to a socket of its own here: nothing to compare with")
	}
	for name, l := range map[string]*net.TCPListener{"systemd's": systemd, "the parent's from systemd": parentSystemd} {
		if n := socketFilterLen(t, rawConn(t, l)); n != 0 {
			t.Errorf("%s socket has a %d-instruction filter after the drain, want none", name, n)
		}
		c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		if err != nil {
			t.Errorf("%s socket refuses connections after the drain: %v", name, err)
			continue
		}
		ac, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ac.Close()
		c.Close()
	}
}
