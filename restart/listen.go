package restart

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/drainhttp/drainhttp"
)

// Listen returns a listener for network and addr ("tcp", "tcp4", "tcp6",
// "unix" or "unixpacket", as net.Listen), the first of:
//
//  1. the one the parent process passed, if this process was started by an
//     upgrade and its parent called Listen with the same network and addr
//     (the same strings: "127.0.0.1:8080" is not ":8080");
//  2. a socket from systemd socket activation bound to addr: a TCP socket
//     whose port is addr's and whose IP is addr's (an IP literal; an empty
//     host, "0.0.0.0" and "::" match any wildcard socket), or the Unix
//     socket at path addr;
//  3. a new one, as net.Listen makes it, except that a TCP listener is
//     plain TCP, not Multipath TCP, so that the server's drain can filter
//     it (see drainhttp.Server.Drain).
//
// Each is passed on to the next process at the next upgrade, and closed in
// this one at the handoff: a listener not served by the Server given to
// ServeUntilSignal (an admin server's, say) stops accepting then too, and
// its Serve returns an error wrapping net.ErrClosed. Call Listen for every
// listener before serving any: the parent's listeners not asked for by
// Ready are closed, and so are systemd's (with a warning). An error wraps
// ErrListen.
//
// The listener returned notes its first Accept call, which is how
// ServeUntilSignal knows that it is served (see Serving); it is not a
// *net.TCPListener. A socket from systemd, received directly or from the
// parent, is marked with drainhttp.SharedListener: systemd holds it too and
// goes on listening on it after this process (for the next start of the
// service), so a drain closes it without filtering it, since a socket filter
// would outlive this process and drop the next one's connections. Give it
// to Server.Serve or Server.ServeTLS as it is: wrapped in another listener
// (tls.NewListener), it is no longer seen as shared unless wrapped again
// with drainhttp.SharedListener.
func (r *Restarter) Listen(network, addr string) (net.Listener, error) {
	ln, from, err := r.find(network, addr)
	if err != nil {
		return nil, err
	}
	l := r.track(ln)
	r.log.Info("drainhttp/restart: listening", "network", network, "addr", ln.Addr().String(), "from", from.String())
	if from.systemd() {
		return drainhttp.SharedListener(l), nil
	}
	return l, nil
}

// origin is where a listener from Listen came from.
type origin uint8

const (
	fromParent        origin = iota // the parent made it
	fromParentSystemd               // the parent had it from systemd
	fromSystemd                     // systemd passed it to this process
	fromNew                         // net.Listen, now
)

var originName = [...]string{
	fromParent:        "parent",
	fromParentSystemd: "parent",
	fromSystemd:       "systemd",
	fromNew:           "new",
}

func (o origin) String() string { return originName[o] }

// systemd reports whether systemd holds the socket too.
func (o origin) systemd() bool { return o == fromParentSystemd || o == fromSystemd }

// find returns the listener Listen(network, addr) returns, unwrapped, and
// registers it to be passed on.
func (r *Restarter) find(network, addr string) (net.Listener, origin, error) {
	ln, err := r.upg.inherited(network, addr)
	from := fromParent
	if err == nil && ln == nil {
		// A systemd socket that the parent received and passed on.
		ln, err = r.upg.inherited(activatedKey(network), addr)
		from = fromParentSystemd
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: inheriting %s %s: %w", ErrListen, network, addr, err)
	}
	if ln != nil {
		return ln, from, nil
	}
	if ln = r.claimActivated(network, addr); ln != nil {
		from = fromSystemd
		err = r.upg.add(activatedKey(network), addr, ln)
	} else {
		from = fromNew
		if ln, err = r.env.listen(network, addr); err != nil {
			return nil, 0, fmt.Errorf("%w: %w", ErrListen, err)
		}
		err = r.upg.add(network, addr, ln)
	}
	if err != nil {
		ln.Close()
		return nil, 0, fmt.Errorf("%w: %s %s cannot be handed over: %w", ErrListen, network, addr, err)
	}
	return ln, from, nil
}

// activatedKey is the network under which a systemd socket is passed on to
// the next process: a key of its own, because tableflip removes the file of
// every Unix socket it knows as "unix" when it stops without upgrading, and
// a socket file that belongs to a .socket unit must outlive the service.
func activatedKey(network string) string { return "systemd:" + network }

// activatedListeners makes listeners of the files systemd passed, and
// closes the files; a file that is not a listening socket is logged and
// ignored.
func activatedListeners(files []*os.File, log *slog.Logger) []net.Listener {
	var ls []net.Listener
	for _, f := range files {
		ln, err := net.FileListener(f)
		if err != nil {
			log.Warn("drainhttp/restart: systemd passed a file that is not a listening socket; ignored",
				"name", f.Name(), "err", err.Error())
		} else {
			ls = append(ls, ln)
		}
		f.Close() // FileListener made its own descriptor
	}
	return ls
}

// claimActivated removes and returns the systemd socket bound to network
// and addr, or nil.
func (r *Restarter) claimActivated(network, addr string) net.Listener {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ln := range r.activated {
		if boundTo(ln.Addr(), network, addr) {
			r.activated = append(r.activated[:i], r.activated[i+1:]...)
			return ln
		}
	}
	return nil
}

// closeUnclaimed closes the systemd sockets no Listen asked for, with a
// warning each.
func (r *Restarter) closeUnclaimed() {
	r.mu.Lock()
	unclaimed := r.activated
	r.activated = nil
	r.mu.Unlock()
	for _, ln := range unclaimed {
		r.log.Warn("drainhttp/restart: systemd socket not asked for by Listen; closed", "addr", ln.Addr().String())
		ln.Close()
	}
}

// closeListeners closes every listener Listen returned: the new process
// accepts on them now, or (in a process that has not reported ready) the
// parent still does.
func (r *Restarter) closeListeners() {
	r.mu.Lock()
	ls := r.listeners
	r.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

// boundTo reports whether a listener's address a is what Listen(network,
// addr) asks for. Host names are not resolved: systemd binds IP literals.
func boundTo(a net.Addr, network, addr string) bool {
	switch network {
	case "unix", "unixpacket":
		return a.Network() == network && a.String() == addr
	case "tcp", "tcp4", "tcp6":
	default:
		return false
	}
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		if p, err = net.LookupPort(network, port); err != nil {
			return false
		}
	}
	if p != ta.Port {
		return false
	}
	if host == "" {
		return ta.IP.IsUnspecified()
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsUnspecified() {
		return ta.IP.IsUnspecified()
	}
	return ip.Equal(ta.IP)
}
