package restart

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"

	"github.com/cloudflare/tableflip"
	"github.com/coreos/go-systemd/v22/activation"
)

// env is a Restarter's access to the operating system, injected by tests as
// tableflip injects its own.
type env struct {
	newUpgrader     func(tableflip.Options) (upgrader, error)
	activationFiles func() []*os.File // systemd's LISTEN_FDS; consumes them
	listen          func(network, addr string) (net.Listener, error)
	notify          func(chan<- os.Signal, ...os.Signal)
	stopNotify      func(chan<- os.Signal)
}

// stdEnv is the real operating system.
var stdEnv = env{
	newUpgrader: func(o tableflip.Options) (upgrader, error) {
		u, err := tableflip.New(o)
		if err != nil {
			return nil, err
		}
		return tableflipUpgrader{u}, nil
	},
	// Unset LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, so that the next
	// process does not see them: its sockets come from this one.
	activationFiles: func() []*os.File { return activation.Files(true) },
	listen:          listen,
	notify:          signal.Notify,
	stopNotify:      signal.Stop,
}

// upgrader is the part of tableflip.Upgrader a Restarter uses; tests fake
// it.
type upgrader interface {
	// inherited returns the listener the parent passed for network and
	// addr, or nil.
	inherited(network, addr string) (net.Listener, error)
	// add registers ln to be passed to the next process under network and
	// addr.
	add(network, addr string, ln net.Listener) error
	Ready() error
	Upgrade() error
	Stop()
	WaitForParent(ctx context.Context) error
	HasParent() bool
}

type tableflipUpgrader struct{ *tableflip.Upgrader }

func (u tableflipUpgrader) inherited(network, addr string) (net.Listener, error) {
	return u.Fds.Listener(network, addr)
}

func (u tableflipUpgrader) add(network, addr string, ln net.Listener) error {
	tl, ok := ln.(tableflip.Listener)
	if !ok {
		return fmt.Errorf("a %T has no file descriptor to pass on", ln)
	}
	return u.Fds.AddListener(network, addr, tl)
}

// listen is net.Listen, except that TCP listeners are plain TCP, not
// Multipath TCP (net.Listen's default on Linux since Go 1.24): the
// server's drain stops new connections on a TCP socket with a socket
// filter before closing it, and an MPTCP socket takes none.
func listen(network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), network, addr)
}
