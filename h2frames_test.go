package drainhttp

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"golang.org/x/net/http2"
)

// TestFrameCursor_FindsEveryPlaceBetweenFramesOutsideHeaderBlocks writes a
// stream of frames with x/net's Framer (a header block split over
// HEADERS and CONTINUATION among them), cuts it at random into writes, and
// checks that the cursor finds exactly the places where a frame of ours may
// go: between frames, after the first, and never inside a header block.
func TestFrameCursor_FindsEveryPlaceBetweenFramesOutsideHeaderBlocks(t *testing.T) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	var allowed []int // offsets where ours may go
	mark := func(ok bool) {
		if ok {
			allowed = append(allowed, buf.Len())
		}
	}
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	mark(true)
	fr.WriteData(1, false, bytes.Repeat([]byte("x"), 40000))
	mark(true)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte("abc"), EndHeaders: false})
	mark(false)
	fr.WriteContinuation(3, false, []byte("def"))
	mark(false)
	fr.WriteContinuation(3, true, []byte("ghi"))
	mark(true)
	fr.WriteWindowUpdate(0, 1000)
	mark(true)
	fr.WriteData(3, true, nil) // empty payload
	mark(true)
	stream := buf.Bytes()
	isAllowed := make(map[int]bool)
	for _, off := range allowed {
		isAllowed[off] = true
	}
	// Fed byte by byte or in one go, the cursor is between frames exactly
	// at the allowed places.
	for i := 0; i <= len(stream); i++ {
		c := replay(stream[:i])
		if got := c.between(); got != isAllowed[i] {
			t.Fatalf("after %d bytes: between %v, want %v", i, got, isAllowed[i])
		}
	}
	// From anywhere, nextBetween finds the first allowed place within a
	// write of any length, or says there is none.
	rng := rand.New(rand.NewPCG(1, 7))
	for range 5000 {
		off := rng.IntN(len(stream))
		n := rng.IntN(len(stream) - off + 1)
		c := replay(stream[:off])
		want := -1
		for i := off; i <= off+n; i++ {
			if isAllowed[i] {
				want = i - off
				break
			}
		}
		if got := c.nextBetween(stream[off : off+n]); got != want {
			t.Fatalf("from %d, within %d bytes: %d, want %d", off, n, got, want)
		}
	}
}

// replay is a cursor that has seen b.
func replay(b []byte) frameCursor {
	var c frameCursor
	c.advance(b, nil)
	return c
}
