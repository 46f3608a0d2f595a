package drainhttp

import (
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// servedListener is a listener a Server serves on. It hands net/http every
// connection exactly as the listener returned it, after recording it.
type servedListener struct {
	net.Listener             // as given to Serve or ServeTLS
	t            *tracker    //
	policy       *ConnPolicy // nil: the server's
	shared       bool        // another process holds the socket too: never filtered
	accepting    atomic.Bool // Serve has entered its accept loop

	closeOnce sync.Once
	closeErr  error
}

func (l *servedListener) Accept() (net.Conn, error) {
	l.accepting.Store(true)
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.t.add(nc, l.policy)
	return nc, nil
}

// Close closes the listener once: Drain closes it, and then net/http closes
// it again, which must not be an error.
func (l *servedListener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.Listener.Close() })
	return l.closeErr
}

// SharedListener returns l marked as a listening socket that another
// process holds too and goes on accepting on after this one: a socket from
// systemd socket activation (systemd keeps it for the next start of the
// service), or one handed over in a hot restart. When a Server's drain
// closes such a listener it only stops accepting on it, and never filters
// the socket (see Drain): the filter would outlive this process. The mark
// is seen through listeners that embed their net.Listener, such as
// tls.NewListener's. drainhttp/restart marks systemd's sockets this way.
func SharedListener(l net.Listener) net.Listener {
	return &sharedListener{Listener: l}
}

type sharedListener struct{ net.Listener }

// WithPolicy returns l with its own ConnPolicy: a Server serving it applies
// p to the listener's connections instead of the server's own ConnPolicy.
// Envoy: per-listener connection limits.
func WithPolicy(l net.Listener, p ConnPolicy) net.Listener {
	return &policyListener{Listener: l, policy: p}
}

type policyListener struct {
	net.Listener
	policy ConnPolicy
}

// listenerSocket returns the TCP listening socket under l, looking through
// the listener wrappers of this package, *tls.Listener's and any other that
// embeds its net.Listener as a field named Listener (as crypto/tls's and
// x/net/netutil's do), or nil.
func listenerSocket(l net.Listener) *net.TCPListener {
	for range 8 {
		switch v := l.(type) {
		case *net.TCPListener:
			return v
		case *servedListener:
			l = v.Listener
		case *sharedListener:
			l = v.Listener
		case *policyListener:
			l = v.Listener
		default:
			if l = embeddedListener(l); l == nil {
				return nil
			}
		}
	}
	return nil
}

// embeddedListener returns the net.Listener that l embeds, if l is a
// pointer to a struct with an embedded field Listener of interface type
// net.Listener.
func embeddedListener(l net.Listener) net.Listener {
	v := reflect.ValueOf(l)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f, ok := v.Elem().Type().FieldByName("Listener")
	if !ok || !f.Anonymous || f.Type != reflect.TypeFor[net.Listener]() || len(f.Index) != 1 {
		return nil
	}
	inner, _ := v.Elem().Field(f.Index[0]).Interface().(net.Listener)
	return inner
}

// Closing a listening socket makes the kernel reset every connection still
// waiting in its accept queue, and a proxy has often sent a request on one
// already. So a drain closes a listener in steps, where it can (Linux, a
// TCP socket no other process holds): it stops the kernel from taking new
// connections (a socket filter drops segments that open one: SYN without
// ACK), goes on accepting until the accept queue has stayed empty for
// listenerHandshakeGrace, so that handshakes already in flight complete and
// are served (with Connection: close or a GOAWAY), and then closes. A
// client arriving after the filter has its SYN dropped; its retransmit,
// a second later, meets a closed port and a clean refusal: its request was
// never sent, and any client or proxy can retry it.

// listenerHandshakeGrace is how long the accept queue must stay empty
// before the listener closes: a handshake whose SYN arrived just before
// the filter completes one round trip later, and round trips within a
// region (and most across regions) are well under this.
const listenerHandshakeGrace = 200 * time.Millisecond

// listenerCloseMax bounds the steps: however busy the queue, the listener
// closes this long after it stopped taking connections.
const listenerCloseMax = time.Second

// listenerPollInterval is how often the accept queue's length is read.
const listenerPollInterval = 5 * time.Millisecond

// closeGracefully closes l as described above, or at once where it cannot
// (a shared socket, not Linux, not TCP, or filter refused).
func (l *servedListener) closeGracefully(clock Clock) {
	sock := listenerSocket(l.Listener)
	if l.shared || sock == nil || stopNewConnections(sock) != nil {
		l.Close()
		return
	}
	start := clock.Now()
	quietSince := start
	for {
		n, err := acceptQueueLen(sock)
		now := clock.Now()
		if err != nil || now.Sub(start) >= listenerCloseMax {
			break
		}
		if n > 0 {
			quietSince = now
		} else if now.Sub(quietSince) >= listenerHandshakeGrace {
			break
		}
		wait := make(chan struct{})
		clock.AfterFunc(listenerPollInterval, func() { close(wait) })
		<-wait
	}
	l.Close()
}
