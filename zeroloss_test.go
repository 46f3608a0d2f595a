package drainhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// loadResult counts what a load's requests got.
type loadResult struct {
	ok, refused atomic.Int64
	mu          sync.Mutex
	failures    map[string]int
}

func (r *loadResult) fail(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures == nil {
		r.failures = make(map[string]int)
	}
	r.failures[what]++
}

func (r *loadResult) failed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.failures {
		n += c
	}
	return n
}

func (r *loadResult) report(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k := range r.failures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Errorf("%d× %s", r.failures[k], k)
	}
}

// post sends one POST with a body (which Go's client never replays: POST
// is not idempotent) and records what it got. A refused connection is not
// a failure: the request was never sent, and any client may retry it.
func (r *loadResult) post(c *http.Client, url string) {
	resp, err := c.Post(url, "text/plain", strings.NewReader("a body sent once"))
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			r.refused.Add(1)
			return
		}
		r.fail(err.Error())
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.fail(resp.Status)
		return
	}
	r.ok.Add(1)
}

// stopAtListenerClose returns a channel closed when s starts closing its
// listeners: a load stops sending new requests then.
func stopAtListenerClose(s *Server) <-chan struct{} {
	stop := make(chan struct{})
	var once sync.Once
	s.OnPhase(func(pc PhaseChange) {
		if pc.Phase >= PhaseClosingListeners {
			once.Do(func() { close(stop) })
		}
	})
	return stop
}

// TestZeroLoss_PausingPOSTClientsOverLatencyLoseNothingInAGradualDrain is
// the idle-close race: closing an idle HTTP/1.1 connection loses a request
// its client wrote less than one trip before it learned of the close. 200
// clients, each with its own keep-alive connection and 10 ms of latency
// each way, POST and pause a random 50 to 800 ms, through a 4 s gradual
// drain, in plain HTTP/1.1 and over TLS (tls.NewListener). Every POST
// succeeds, and the drain ends within its bound.
func TestZeroLoss_PausingPOSTClientsOverLatencyLoseNothingInAGradualDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 7 s per protocol")
	}
	for _, proto := range []string{"http/1.1", "http/1.1-tlslistener"} {
		t.Run(proto, func(t *testing.T) { pausingPOSTClientsThroughADrain(t, proto) })
	}
}

func pausingPOSTClientsThroughADrain(t *testing.T, proto string) {
	const clients = 200
	s := &Server{Handler: okHandler(), DrainTime: 4 * time.Second}
	ts := startServer(t, s)
	stop := stopAtListenerClose(s)
	var res loadResult
	var wg sync.WaitGroup
	started := make(chan struct{}, clients)
	for i := range clients {
		tr, url := ts.transport(proto)
		tr.DialContext = latencyDialer(10 * time.Millisecond)
		c := &http.Client{Transport: tr, Timeout: testTimeout}
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		wg.Go(func() {
			first := true
			for {
				select {
				case <-stop:
					return
				default:
				}
				res.post(c, url)
				if first {
					started <- struct{}{}
					first = false
				}
				pause := time.Duration(50+rng.IntN(751)) * time.Millisecond
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
			}
		})
	}
	for range clients {
		<-started
	}
	start := time.Now()
	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	wg.Wait()
	st := s.Stats()
	t.Logf("%d POSTs ok, %d failed, %d refused after the listeners closed; drain took %v; %d connections, drained %v, forced %d",
		res.ok.Load(), res.failed(), res.refused.Load(), took.Round(time.Millisecond), st.Accepted, st.Drained, st.Forced)
	res.report(t)
	if bound := s.DrainTime + listenerCloseMax + DefaultDrainTimeout; took > bound {
		t.Errorf("the drain took %v, more than its bound %v", took, bound)
	}
	if res.ok.Load() < clients {
		t.Errorf("only %d POSTs succeeded", res.ok.Load())
	}
}

// TestZeroLoss_MixedClientsOnEveryProtocolLoseNothing: GET and POST
// clients on every protocol, keep-alive, through a gradual drain: every
// request succeeds, and connections cycle as the drain tells them to.
func TestZeroLoss_MixedClientsOnEveryProtocolLoseNothing(t *testing.T) {
	s := &Server{Handler: okHandler(), DrainTime: 2 * time.Second}
	ts := startServer(t, s)
	stop := stopAtListenerClose(s)
	var res loadResult
	var wg sync.WaitGroup
	for _, proto := range testProtos {
		for i := range 3 {
			c, url := ts.client(proto)
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if i%2 == 0 {
						res.post(c, url)
						continue
					}
					resp, err := c.Get(url)
					if err != nil {
						if errors.Is(err, syscall.ECONNREFUSED) {
							res.refused.Add(1)
							continue
						}
						res.fail(fmt.Sprintf("GET: %v", err))
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					res.ok.Add(1)
				}
			})
		}
	}
	waitFor(t, "requests to flow", func() bool { return res.ok.Load() > 100 })
	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("%d requests ok, %d failed, %d refused; %d connections accepted, drained %v, goaways %d, forced %d",
		res.ok.Load(), res.failed(), res.refused.Load(), st.Accepted, st.Drained, st.GoAways, st.Forced)
	res.report(t)
	if st.Forced != 0 {
		t.Errorf("%d connections forced", st.Forced)
	}
}
