package drainhttp

// frameCursor follows the frame boundaries of one direction of an HTTP/2
// connection from the bytes that pass, without buffering them: a frame is
// a 9-byte header (24-bit length, type, flags, stream) and its payload
// (RFC 9113 section 4.1).
type frameCursor struct {
	skip    int32 // bytes still to pass before the first frame: the client preface
	n       int32 // header bytes seen of the current frame, 0 to 9
	left    int32 // payload bytes left, once the header is complete (at most 2^24-1)
	frames  int32 // frame headers seen, up to a point (between only asks whether any)
	hdr     [9]byte
	inBlock bool // inside a header block: no other frame may come (RFC 9113 section 6.10)
}

// HTTP/2 frame types and flags (RFC 9113 section 6).
const (
	frameHeaders      = 0x1
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameContinuation = 0x9

	flagAck        = 0x1
	flagEndHeaders = 0x4
)

// clientPrefaceLen is the length of "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
const clientPrefaceLen = 24

// between reports whether a frame of ours may be written now: a frame has
// been written before (the server's SETTINGS comes first), the stream is
// between two frames, and not inside a header block.
func (c *frameCursor) between() bool {
	return c.frames > 0 && c.skip == 0 && c.n == 0 && c.left == 0 && !c.inBlock
}

// step consumes the leading bytes of p, at most up to the end of the
// current preface, header or payload, and returns how many. onFrame, if
// not nil, sees each frame's header with the chunks of its payload as they
// pass, done on the last one (at once for an empty payload).
func (c *frameCursor) step(p []byte, onFrame func(hdr *[9]byte, chunk []byte, done bool)) int {
	switch {
	case c.skip > 0:
		k := min(int(c.skip), len(p))
		c.skip -= int32(k)
		return k
	case c.left > 0:
		k := min(int(c.left), len(p))
		c.left -= int32(k)
		if onFrame != nil {
			onFrame(&c.hdr, p[:k], c.left == 0)
		}
		if c.left == 0 {
			c.n = 0
		}
		return k
	}
	k := copy(c.hdr[c.n:], p)
	c.n += int32(k)
	if c.n == int32(len(c.hdr)) {
		c.frames = min(c.frames+1, 1<<30)
		switch c.hdr[3] {
		case frameHeaders, framePushPromise, frameContinuation:
			c.inBlock = c.hdr[4]&flagEndHeaders == 0
		}
		c.left = int32(c.hdr[0])<<16 | int32(c.hdr[1])<<8 | int32(c.hdr[2])
		if c.left == 0 {
			c.n = 0
			if onFrame != nil {
				onFrame(&c.hdr, nil, true)
			}
		}
	}
	return k
}

// advance consumes all of p.
func (c *frameCursor) advance(p []byte, onFrame func(hdr *[9]byte, chunk []byte, done bool)) {
	for len(p) > 0 {
		p = p[c.step(p, onFrame):]
	}
}

// nextBetween returns how many leading bytes of p bring the stream to the
// first place where a frame of ours may go (0 if it is at one), or -1 if
// there is none within p. It does not move c.
func (c *frameCursor) nextBetween(p []byte) int {
	probe := *c
	for off := 0; ; {
		if probe.between() {
			return off
		}
		if off == len(p) {
			return -1
		}
		off += probe.step(p[off:], nil)
	}
}

// goAwayHeadsUp is RFC 9113 section 6.8's first GOAWAY of a graceful
// shutdown: last stream 2^31-1, NO_ERROR, so that the client opens no new
// stream and nothing it has sent is refused; then a PING whose ACK tells
// that the client has seen it. The PING's payload is pingPayload.
var goAwayHeadsUp = [...]byte{
	0, 0, 8, frameGoAway, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0,
	0, 0, 8, framePing, 0, 0, 0, 0, 0, 'd', 'r', 'a', 'i', 'n', 'h', 't', 'p',
}

// pingPayload is the opaque data of our PING. Go's server compares the
// ACKs it receives with its own PING's random data and ignores others.
var pingPayload = [8]byte{'d', 'r', 'a', 'i', 'n', 'h', 't', 'p'}
