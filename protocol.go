package drainhttp

// connProtocol is the application protocol of a connection.
type connProtocol uint8

const (
	// protoHTTP1 is HTTP/1.x, over TLS or not. Every connection starts as
	// HTTP/1.x until net/http hands it to HTTP/2.
	protoHTTP1 connProtocol = iota
	// protoH2 is HTTP/2 over TLS, negotiated with ALPN.
	protoH2
	// protoH2C is HTTP/2 over cleartext TCP with prior knowledge.
	protoH2C

	numProtocols = iota
)

var protocolName = [numProtocols]string{"http/1.1", "h2", "h2c"}

func (p connProtocol) String() string {
	if int(p) < len(protocolName) {
		return protocolName[p]
	}
	return "connProtocol(?)"
}
