package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// role is a kind of client.
type role struct {
	h2c    bool
	post   bool // every request is a POST (idle clients alternate)
	idle   bool // one request every idleEvery: the connection is mostly idle
	stream bool // GET /stream
}

func (r role) String() string {
	proto := "http/1.1"
	if r.h2c {
		proto = "h2c"
	}
	switch {
	case r.stream:
		return proto + " stream"
	case r.idle:
		return proto + " idle"
	case r.post:
		return proto + " POST"
	}
	return proto + " GET"
}

// Client pacing.
const (
	busyEvery   = 25 * time.Millisecond   // a busy client's request interval
	idleEvery   = 1500 * time.Millisecond // an idle client's request interval, ±50 %
	streamPause = 200 * time.Millisecond  // pause between a streaming client's streams
	postSize    = 1024                    // POST body bytes
	// requestTimeout bounds a request, so that a lost response cannot hang
	// the demo.
	requestTimeout = 10 * time.Second
)

// roleOf spreads clients over six kinds: busy GET and busy POST over
// HTTP/1.1 and h2c, idle and streaming (alternating HTTP/1.1 and h2c).
func roleOf(i int) role {
	odd := (i/6)%2 == 1
	switch i % 6 {
	case 0:
		return role{}
	case 1:
		return role{post: true}
	case 2:
		return role{h2c: true}
	case 3:
		return role{h2c: true, post: true}
	case 4:
		return role{h2c: odd, idle: true}
	default:
		return role{h2c: !odd, stream: true}
	}
}

// newTransport returns a client transport that speaks only HTTP/1.1, or only
// h2c with prior knowledge.
func newTransport(h2c bool) *http.Transport {
	p := new(http.Protocols)
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return &http.Transport{
		DialContext:        (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		Protocols:          p,
		DisableCompression: true,
		MaxIdleConns:       4,
	}
}

// client is one client with its own connection pool.
type client struct {
	role role
	base string // "http://127.0.0.1:port"
	tr   *http.Transport
	hc   *http.Client
	body []byte
	n    int // requests sent
}

func newClient(r role, base string) *client {
	tr := newTransport(r.h2c)
	body := make([]byte, postSize)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	return &client{role: r, base: base, tr: tr, hc: &http.Client{Transport: tr, Timeout: requestTimeout}, body: body}
}

// run sends requests until the load balancer takes the server out or ctx
// ends: it checks the load balancer before each request, never during one.
// Requests start on a schedule, one every period (or as soon as the
// previous one is done, if it took longer), so that a request that fails
// fast does not make the client send more of them.
func (c *client) run(ctx context.Context, lb *balancer, m *metrics) {
	if !sleep(ctx, rand.N(c.period())) { // spread the clients' schedules
		return
	}
	for lb.healthy() {
		next := time.Now().Add(c.period())
		// A request cut short by ctx is counted too: ctx ends early only
		// when the demo is interrupted (and its counts are dropped) or a
		// request outlives the server, which is a failure.
		m.record(c.role, c.do(ctx))
		if !sleep(ctx, time.Until(next)) {
			return
		}
	}
}

// period is the time from the start of one request to the start of the
// next.
func (c *client) period() time.Duration {
	switch {
	case c.role.idle:
		return idleEvery/2 + rand.N(idleEvery)
	case c.role.stream:
		return streamEvery*streamLines + streamPause
	}
	return busyEvery
}

// do sends one request and checks that the whole, expected response came
// back.
func (c *client) do(ctx context.Context) error {
	c.n++
	post := c.role.post || (c.role.idle && c.n%2 == 0)
	var req *http.Request
	var err error
	switch {
	case c.role.stream:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/stream", nil)
	case post:
		// A bytes.Reader body sets GetBody, so Go's client may replay the
		// request where that is safe (an HTTP/2 stream refused by GOAWAY).
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/work", bytes.NewReader(c.body))
	default:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/work", nil)
	}
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode}
	}
	want := "ok 0\n"
	switch {
	case c.role.stream:
		want = "end " + strconv.Itoa(streamLines) + "\n"
	case post:
		want = "ok " + strconv.Itoa(postSize) + "\n"
	}
	if !strings.HasSuffix(string(b), want) {
		return fmt.Errorf("%w: got %q, want it to end with %q", errIncomplete, tail(string(b)), want)
	}
	return nil
}

func tail(s string) string {
	if len(s) > 40 {
		return "…" + s[len(s)-40:]
	}
	return s
}

var errIncomplete = errors.New("incomplete response")

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + strconv.Itoa(e.code) }

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// failKind is why a request failed.
type failKind int

const (
	failRefused failKind = iota // connection refused: the listener was closed
	failReset                   // connection reset, HTTP/2 stream reset or connection lost
	failEOF                     // the connection closed before the response was complete
	failTimeout
	failStatus // a status other than 200
	failOther
	numFailKinds
)

var failName = [numFailKinds]string{"refused", "reset", "eof", "timeout", "status", "other"}

func (k failKind) String() string { return failName[k] }

// classify sorts a client error into a failKind.
func classify(err error) failKind {
	var se *statusError
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return failRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		strings.Contains(msg, "stream error"), strings.Contains(msg, "connection lost"),
		strings.Contains(msg, "GOAWAY"), strings.Contains(msg, "server sent GOAWAY"):
		return failReset
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, errIncomplete),
		strings.Contains(msg, "server closed idle connection"):
		return failEOF
	case errors.As(err, &se):
		return failStatus
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return failTimeout
	}
	return failOther
}

// metrics counts the requests of one run.
type metrics struct {
	requests atomic.Int64
	ok       atomic.Int64
	failed   [numFailKinds]atomic.Int64

	mu       sync.Mutex
	examples map[string]string // one error per role and kind
}

func newMetrics() *metrics { return &metrics{examples: make(map[string]string)} }

func (m *metrics) record(r role, err error) {
	m.requests.Add(1)
	if err == nil {
		m.ok.Add(1)
		return
	}
	k := classify(err)
	m.failed[k].Add(1)
	key := r.String() + ", " + k.String()
	m.mu.Lock()
	if _, ok := m.examples[key]; !ok {
		m.examples[key] = describe(err)
	}
	m.mu.Unlock()
}

func (m *metrics) failedTotal() int64 {
	var n int64
	for i := range m.failed {
		n += m.failed[i].Load()
	}
	return n
}

// balancer is the load balancer's health checker: it probes /ready at
// fixed instants relative to the signal and takes the server out at the
// first failed probe.
type balancer struct {
	url     string
	every   time.Duration
	tr      *http.Transport
	hc      *http.Client
	up      atomic.Bool
	downAt  atomic.Int64 // UnixNano of the failed probe
	probes  atomic.Int64
	lastErr atomic.Value // string
}

// newBalancer returns a health checker of base/ready that adds the local
// address of each connection it opens to probes.
func newBalancer(base string, every time.Duration, probes *addrSet) *balancer {
	tr := newTransport(false)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			probes.add(c.LocalAddr().String())
		}
		return c, err
	}
	b := &balancer{url: base + "/ready", every: every, tr: tr, hc: &http.Client{Transport: tr, Timeout: every}}
	b.up.Store(true)
	return b
}

func (b *balancer) healthy() bool { return b.up.Load() }

// down returns when the load balancer took the server out, or the zero
// time.
func (b *balancer) down() time.Time {
	if n := b.downAt.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// run probes at signal + (k + 1/2) × every, for every integer k, so that
// the first probe after the signal comes half an interval after it for both
// servers, until a probe fails or ctx ends.
func (b *balancer) run(ctx context.Context, signalAt time.Time) {
	offset := signalAt.Add(b.every / 2)
	k := math.Ceil(float64(time.Since(offset)) / float64(b.every))
	next := offset.Add(time.Duration(k) * b.every)
	for {
		if !sleep(ctx, time.Until(next)) {
			return
		}
		next = next.Add(b.every)
		err := b.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		b.probes.Add(1)
		if err != nil {
			b.lastErr.Store(shortError(err))
			b.downAt.Store(time.Now().UnixNano())
			b.up.Store(false)
			return
		}
	}
}

func (b *balancer) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return err
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode}
	}
	return nil
}

// describe describes a client error without the server's address, which
// the display shows elsewhere: `Get "http://127.0.0.1:1234/work": EOF`
// becomes "GET /work: EOF".
func describe(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	target := ue.URL
	if u, perr := url.Parse(ue.URL); perr == nil {
		target = u.RequestURI()
	}
	return strings.ToUpper(ue.Op) + " " + target + ": " + ue.Err.Error()
}

// shortError describes a probe error without its URL.
func shortError(err error) string {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	return err.Error()
}
