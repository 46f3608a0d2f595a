package admin

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// hostPolicy is the Host allowlist of New: loopback, the connection's own
// address, and Options.AllowedHosts. It never resolves a name: resolving is
// what DNS rebinding subverts.
type hostPolicy struct {
	any      bool            // AllowedHosts has "*"
	names    map[string]bool // names and addresses, any port
	withPort map[string]bool // "name:port", "[::1]:port"
	suffixes []string        // ".example.com" for "*.example.com", any port
	wild     []hostPort      // "*.example.com:port"
}

type hostPort struct{ suffix, port string }

func newHostPolicy(allowed []string) hostPolicy {
	p := hostPolicy{names: map[string]bool{}, withPort: map[string]bool{}}
	for _, e := range allowed {
		e = strings.TrimSpace(e)
		if e == "*" {
			p.any = true
			continue
		}
		host, port := splitHost(e)
		if host == "" {
			continue // matches nothing
		}
		switch wild := strings.HasPrefix(host, "*."); {
		case wild && port == "":
			p.suffixes = append(p.suffixes, host[1:])
		case wild:
			p.wild = append(p.wild, hostPort{host[1:], port})
		case port == "":
			p.names[host] = true
		default:
			p.withPort[net.JoinHostPort(host, port)] = true
		}
	}
	return p
}

// allows reports whether r's Host is on the allowlist.
func (p *hostPolicy) allows(r *http.Request) bool {
	if p.any {
		return true
	}
	host, port := splitHost(r.Host)
	if host == "" || !validPort(port) {
		return false
	}
	if isLoopback(host) {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if local, ok := localIP(r); ok && ip == local {
			return true
		}
	}
	if p.names[host] || (port != "" && p.withPort[net.JoinHostPort(host, port)]) {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	for _, w := range p.wild {
		if port == w.port && strings.HasSuffix(host, w.suffix) {
			return true
		}
	}
	return false
}

// splitHost returns the host of a Host header or allowlist entry, in lower
// case, without brackets or a trailing dot, an address in its canonical
// form, and its port ("" if none).
func splitHost(hostport string) (host, port string) {
	host = hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1] // "[::1]" without a port
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.WithZone("").Unmap().String() // one spelling per address
	}
	return host, port
}

// validPort reports whether port is empty or a decimal port number: a Host
// with anything else is malformed, and matches nothing.
func validPort(port string) bool {
	if len(port) > 5 {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isLoopback reports whether host is a loopback name or address. Browsers
// resolve localhost and its subdomains to loopback themselves, without DNS
// (RFC 6761, section 6.3), so a page cannot rebind them.
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// localIP returns the IP address of the connection's own end, which
// net/http puts in the request's context.
func localIP(r *http.Request) (netip.Addr, bool) {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || a == nil {
		return netip.Addr{}, false
	}
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok = netip.AddrFromSlice(a.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		ip, ok = ap.Addr(), err == nil
	}
	if !ok || !ip.IsValid() {
		return netip.Addr{}, false
	}
	return ip.WithZone("").Unmap(), true
}
