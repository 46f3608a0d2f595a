//go:build go1.27

package drainhttp

// servesAnyTLSConn reports whether net/http serves any connection with a
// ConnectionState method as TLS (and HTTP/2 over it, if it says "h2"). Go
// 1.27 does, so every HTTP/2 connection is served through an h2TLSWire and
// gets the two-phase GOAWAY.
const servesAnyTLSConn = true
