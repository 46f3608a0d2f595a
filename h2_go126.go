//go:build !go1.27

package drainhttp

// servesAnyTLSConn reports whether net/http serves any connection with a
// ConnectionState method as TLS (and HTTP/2 over it, if it says "h2"). Go
// 1.26 requires a *tls.Conn, so drainhttp cannot see the bytes of an
// HTTP/2 connection over TLS there, and sends it net/http's single-phase
// GOAWAY; h2c connections get the two-phase one through an h2Wire that
// replays their preface.
const servesAnyTLSConn = false
