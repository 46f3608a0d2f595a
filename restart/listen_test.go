package restart

import (
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/cloudflare/tableflip"
	"github.com/drainhttp/drainhttp"
)

// tcpFile returns the file of a new listening TCP socket on loopback, as
// systemd would pass it, and its address. The listener it came from is
// closed: the file holds the socket.
func tcpFile(t *testing.T) (*os.File, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return f, l.Addr().String()
}

func TestListen_TakesInheritedThenSystemdThenNewListeners(t *testing.T) {
	sdFile, sdAddr := tcpFile(t)
	unusedFile, unusedAddr := tcpFile(t)
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeW.Close()

	fu := newFakeUpgrader()
	fromParent, fromParentSD := newPipeListener("parent"), newPipeListener("parent-systemd")
	fu.inherit[[2]string{"tcp", "127.0.0.1:1"}] = fromParent
	fu.inherit[[2]string{"systemd:tcp", "127.0.0.1:2"}] = fromParentSD
	logs := new(logBuffer)
	r, err := newRestarter(Options{Logger: logs.logger()}, env{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return []*os.File{sdFile, pipeR, unusedFile} },
		listen:          net.Listen,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	listen := func(addr string) net.Listener {
		t.Helper()
		ln, err := r.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("Listen(tcp, %s): %v", addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	if ln := listen("127.0.0.1:1"); ln.Addr() != fromParent.Addr() {
		t.Errorf("Listen did not return the inherited listener: %v", ln.Addr())
	}
	if ln := listen("127.0.0.1:2"); ln.Addr() != fromParentSD.Addr() {
		t.Errorf("Listen did not return the inherited systemd listener: %v", ln.Addr())
	}
	sd := listen(sdAddr)
	if passed := fu.added[[2]string{"systemd:tcp", sdAddr}]; sd.Addr().String() != sdAddr || passed == nil || passed.Addr().String() != sdAddr {
		t.Errorf("systemd listener %v, passed on as %v", sd.Addr(), fu.added)
	}
	fresh := listen("127.0.0.1:0")
	if passed := fu.added[[2]string{"tcp", "127.0.0.1:0"}]; passed == nil || passed.Addr() != fresh.Addr() {
		t.Errorf("new listener not passed on: %v", fu.added)
	}
	if _, ok := fu.added[[2]string{"tcp", "127.0.0.1:0"}].(*net.TCPListener); !ok {
		t.Errorf("tableflip was given a %T, want the *net.TCPListener itself (it needs its file)", fu.added[[2]string{"tcp", "127.0.0.1:0"}])
	}
	for _, ln := range []net.Listener{sd, fresh} { // both accept
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		ac, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ac.Close()
		c.Close()
	}

	if err := r.Ready(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", unusedAddr); err == nil {
		c.Close()
		t.Error("the systemd socket no Listen asked for is still open after Ready")
	}
	var from []string
	for _, rec := range logs.logged(t, "drainhttp/restart: listening") {
		from = append(from, rec["from"].(string))
	}
	if strings.Join(from, ",") != "parent,parent,systemd,new" {
		t.Errorf("listeners came from %v, want parent,parent,systemd,new", from)
	}
	if len(logs.logged(t, "drainhttp/restart: systemd passed a file that is not a listening socket; ignored")) != 1 ||
		len(logs.logged(t, "drainhttp/restart: systemd socket not asked for by Listen; closed")) != 1 {
		t.Errorf("warnings about systemd's files:\n%s", logs)
	}
}

type failingAdd struct{ *fakeUpgrader }

func (failingAdd) add(string, string, net.Listener) error { return errors.New("no fd") }

func TestListen_ErrorsWrapErrListenAndTheCause(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fu := newFakeUpgrader()
	r, err := newRestarter(Options{}, env{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return nil },
		listen:          net.Listen,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	_, err = r.Listen("tcp", busy.Addr().String())
	if !errors.Is(err, ErrListen) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on a busy address = %v, want ErrListen and EADDRINUSE", err)
	}

	var closed *pipeListener
	r2, err := newRestarter(Options{}, env{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return failingAdd{fu}, nil },
		activationFiles: func() []*os.File { return nil },
		listen: func(_, addr string) (net.Listener, error) {
			closed = newPipeListener(addr)
			return closed, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Stop()
	if _, err := r2.Listen("tcp", ":1"); !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), "cannot be handed over: no fd") {
		t.Errorf("Listen that cannot pass its listener on = %v", err)
	}
	if !closed.refuses() {
		t.Error("the listener that cannot be passed on was not closed")
	}
}

func TestBoundTo_MatchesSystemdSocketsByAddress(t *testing.T) {
	tcp := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	unix := &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}
	for _, tc := range []struct {
		a             net.Addr
		network, addr string
		want          bool
	}{
		{tcp("127.0.0.1", 8080), "tcp", "127.0.0.1:8080", true},
		{tcp("127.0.0.1", 8080), "tcp4", "127.0.0.1:8080", true},
		{tcp("::ffff:127.0.0.1", 8080), "tcp", "127.0.0.1:8080", true},
		{tcp("127.0.0.1", 8080), "tcp", "127.0.0.1:8081", false},
		{tcp("127.0.0.2", 8080), "tcp", "127.0.0.1:8080", false},
		{tcp("::", 8080), "tcp", ":8080", true},
		{tcp("0.0.0.0", 8080), "tcp", "[::]:8080", true},
		{tcp("127.0.0.1", 8080), "tcp", ":8080", false},
		{tcp("::", 80), "tcp", ":http", true},
		{tcp("127.0.0.1", 8080), "tcp", "localhost:8080", false}, // not resolved
		{tcp("127.0.0.1", 8080), "tcp", "127.0.0.1", false},
		{tcp("127.0.0.1", 8080), "udp", "127.0.0.1:8080", false},
		{unix, "unix", "/run/x.sock", true},
		{unix, "unix", "/run/y.sock", false},
		{unix, "unixpacket", "/run/x.sock", false},
		{unix, "tcp", "/run/x.sock", false},
	} {
		if got := boundTo(tc.a, tc.network, tc.addr); got != tc.want {
			t.Errorf("boundTo(%v, %q, %q) = %v, want %v", tc.a, tc.network, tc.addr, got, tc.want)
		}
	}
}

// TestListen_MarksSystemdSocketsShared checks that the sockets systemd
// holds, received directly or through the parent, are returned as
// drainhttp.SharedListener returns them, so that a drain never filters
// them, and that the others are not (TestListen_SystemdSocketsAreNever
// FilteredByTheDrain checks the effect, where the kernel has socket filters).
func TestListen_MarksSystemdSocketsShared(t *testing.T) {
	sdFile, sdAddr := tcpFile(t)
	fu := newFakeUpgrader()
	fu.inherit[[2]string{"tcp", "127.0.0.1:1"}] = newPipeListener("parent")
	fu.inherit[[2]string{"systemd:tcp", "127.0.0.1:2"}] = newPipeListener("parent-systemd")
	r, err := newRestarter(Options{}, env{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return []*os.File{sdFile} },
		listen:          func(_, addr string) (net.Listener, error) { return newPipeListener(addr), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	sharedType := reflect.TypeOf(drainhttp.SharedListener(newPipeListener("x")))
	for _, tc := range []struct {
		addr, from string
		shared     bool
	}{
		{"127.0.0.1:1", "the parent", false},
		{"127.0.0.1:2", "the parent, from systemd", true},
		{sdAddr, "systemd", true},
		{"127.0.0.1:3", "net.Listen", false},
	} {
		ln, err := r.Listen("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if shared := reflect.TypeOf(ln) == sharedType; shared != tc.shared {
			t.Errorf("the listener from %s is a %T: shared %v, want %v", tc.from, ln, shared, tc.shared)
		}
	}
}
