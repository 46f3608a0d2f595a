package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drainhttp/drainhttp"
)

// sampleEvery is the period of the timeline's samples and of the live
// display's updates.
const sampleEvery = 100 * time.Millisecond

// tailTime is how long the timeline goes on after everything stopped, so
// that the chart shows the end.
const tailTime = 500 * time.Millisecond

// sample is one point of a run's timeline.
type sample struct {
	t      time.Duration // since the signal; negative before it
	conns  connCounts
	ok     int64 // cumulative
	failed int64 // cumulative
}

// frame is what the live display shows, replaced at every sample.
type frame struct {
	sample
	phase    string  // "warm-up", the stop action, "done"
	progress float64 // of the window bar, 0 to 1
	rps      float64 // successful requests per second over the last second
	byKind   [numFailKinds]int64
	lbUp     bool
	lbDown   time.Duration    // from the signal to the load balancer taking the server out, once it has
	stopTook time.Duration    // from the signal until stop returned, once it has
	stats    *drainhttp.Stats // drainhttp only
}

// result is the outcome of one run.
type result struct {
	server      *server
	requests    int64
	ok          int64
	byKind      [numFailKinds]int64
	examples    map[string]string
	atSignal    connCounts    // connections when the signal came
	end         connCounts    // at the end
	lbDown      time.Duration // from the signal to the load balancer taking the server out; -1 if it never did
	stopTook    time.Duration // from the signal until stop returned
	stopErr     error
	acceptedFor time.Duration // how long the listener accepted after the signal
	stats       *drainhttp.Stats
	samples     []sample
}

func (r *result) failed() int64 {
	var n int64
	for _, v := range r.byKind {
		n += v
	}
	return n
}

// closedAfterSignal is the number of connections closed from the signal on.
func (r *result) closedAfterSignal() int64 { return r.end.closed - r.atSignal.closed }

// drained is the number of connections drainhttp counted as drained.
func (r *result) drained() uint64 {
	if r.stats == nil {
		return 0
	}
	var n uint64
	for _, v := range r.stats.Drained {
		n += v
	}
	return n
}

// display shows a run live.
type display interface {
	start(signalAt time.Time)
	update(f *frame)
	event(t time.Duration, msg string) // t since the signal
	finish()
}

// runScenario serves srv on a loopback port, runs the clients and the load
// balancer against it, sends it the signal after cfg.warmup and returns once
// the server has stopped and every client has finished.
func runScenario(ctx context.Context, cfg config, srv *server, disp display) (*result, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.serve(l) }()
	base := "http://" + l.Addr().String()

	start := time.Now()
	signalAt := start.Add(cfg.warmup)
	m := newMetrics()
	lb := newBalancer(base, cfg.probeInterval, &srv.conns.probes)
	clients := make([]*client, cfg.clients)
	for i := range clients {
		clients[i] = newClient(roleOf(i), base)
	}
	defer func() {
		lb.tr.CloseIdleConnections()
		for _, c := range clients {
			c.tr.CloseIdleConnections()
		}
	}()

	// runCtx ends the clients and the load balancer only if the demo is
	// interrupted or a server hangs: normally they stop by themselves.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var clientsWG, lbWG sync.WaitGroup
	lbWG.Go(func() { lb.run(runCtx, signalAt) })
	for _, c := range clients {
		clientsWG.Go(func() { c.run(runCtx, lb, m) })
	}
	clientsDone := make(chan struct{})
	go func() { clientsWG.Wait(); close(clientsDone) }()

	res := &result{server: srv, lbDown: -1}
	var (
		stopStarted  atomic.Int64 // UnixNano
		stopFinished atomic.Int64
	)
	disp.start(signalAt)
	if srv.logs != nil {
		srv.logs.listen(func(at time.Time, line string) { disp.event(at.Sub(signalAt), line) })
	}

	// The sampler records the timeline and feeds the display.
	stopSampler := make(chan struct{})
	var samplerWG sync.WaitGroup
	samplerWG.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		var lbAnnounced bool
		for {
			now := time.Now()
			s := sample{t: now.Sub(signalAt), conns: srv.conns.counts(), ok: m.ok.Load(), failed: m.failedTotal()}
			f := &frame{sample: s, lbUp: lb.healthy()}
			if !f.lbUp {
				f.lbDown = lb.down().Sub(signalAt)
			}
			for k := range f.byKind {
				f.byKind[k] = m.failed[k].Load()
			}
			res.samples = append(res.samples, s) // read once the sampler is done
			if back := len(res.samples) - 1 - int(time.Second/sampleEvery); back >= 0 {
				prev := res.samples[back]
				f.rps = float64(s.ok-prev.ok) / (s.t - prev.t).Seconds()
			}
			switch started, finished := stopStarted.Load(), stopFinished.Load(); {
			case started == 0 && s.t >= 0:
				f.phase = "signal"
			case started == 0:
				f.phase = "warm-up"
				f.progress = min(1, float64(now.Sub(start))/float64(cfg.warmup))
			case finished == 0:
				f.phase = srv.action
				f.progress = min(1, float64(now.Sub(time.Unix(0, started)))/float64(srv.window))
				if srv.progress != nil {
					f.progress = srv.progress()
				}
			default:
				f.phase = "done"
				f.stopTook = time.Unix(0, finished).Sub(signalAt)
				f.progress = 1
				if srv.progress == nil { // Shutdown's bar stops where it returned
					f.progress = min(1, float64(finished-started)/float64(srv.window))
				}
			}
			if srv.stats != nil {
				st := srv.stats()
				f.stats = &st
			}
			if !f.lbUp && !lbAnnounced {
				lbAnnounced = true
				disp.event(f.lbDown, fmt.Sprintf("load balancer: /ready probe failed (%v): no new requests",
					lb.lastErr.Load()))
			}
			disp.update(f)
			select {
			case <-tick.C:
			case <-stopSampler:
				return
			}
		}
	})
	finish := func() {
		if srv.logs != nil {
			srv.logs.listen(nil)
		}
		close(stopSampler)
		samplerWG.Wait()
		disp.finish()
	}

	// abort stops everything at once and waits for it.
	var gotServed, stopping, gotStopped bool
	stopped := make(chan error, 1)
	abort := func(err error) (*result, error) {
		srv.close()
		cancelRun()
		<-clientsDone
		lbWG.Wait()
		if !gotServed {
			<-served
		}
		if stopping && !gotStopped {
			<-stopped
		}
		finish()
		return nil, err
	}

	// Warm-up, then the signal.
	if !sleep(ctx, time.Until(signalAt)) {
		return abort(ctx.Err())
	}
	select {
	case err := <-served:
		gotServed = true
		return abort(fmt.Errorf("serve: %w", err))
	default:
	}
	res.atSignal = srv.conns.counts()
	disp.event(time.Since(signalAt), fmt.Sprintf("signal: calling %s; %d connections open (%d from clients, %d from the load balancer)",
		srv.action, res.atSignal.open, res.atSignal.clients(), res.atSignal.probe))
	stopping = true
	stopStarted.Store(time.Now().UnixNano())
	go func() { stopped <- srv.stop(ctx) }()

	// Each server must stop by itself within its window plus the drain
	// timeout; a little more is allowed before the demo gives up on it.
	hang := time.NewTimer(srv.window + cfg.drainTimeout + 5*time.Second)
	defer hang.Stop()
	var servedErr error
	var servedAt time.Time
	servedC, stoppedC := served, stopped
	for !gotServed || !gotStopped {
		select {
		case res.stopErr = <-stoppedC:
			gotStopped, stoppedC = true, nil
			stopFinished.Store(time.Now().UnixNano())
			res.stopTook = time.Since(signalAt)
			msg := srv.action + " returned"
			if res.stopErr != nil {
				msg += ": " + res.stopErr.Error()
			}
			disp.event(res.stopTook, msg)
		case servedErr = <-servedC:
			gotServed, servedC = true, nil
			servedAt = time.Now()
			disp.event(servedAt.Sub(signalAt), "listener closed: Serve returned")
		case <-ctx.Done():
			return abort(ctx.Err())
		case <-hang.C:
			return abort(fmt.Errorf("%s did not return", srv.action))
		}
	}
	if !errors.Is(servedErr, http.ErrServerClosed) {
		return abort(fmt.Errorf("serve: %w", servedErr))
	}
	res.acceptedFor = servedAt.Sub(signalAt)

	// The server is gone, so every client ends: the load balancer's next
	// probe fails, and no request can hang on a closed connection. The
	// timer is only a safety net.
	straggle := time.NewTimer(time.Second + 2*cfg.probeInterval)
	defer straggle.Stop()
	select {
	case <-clientsDone:
	case <-ctx.Done():
	case <-straggle.C:
		disp.event(time.Since(signalAt), "clients still running after the server stopped: cancelling them")
	}
	cancelRun()
	<-clientsDone
	lbWG.Wait()
	sleep(ctx, tailTime)
	finish()

	res.end = srv.conns.counts()
	res.requests = m.requests.Load()
	res.ok = m.ok.Load()
	for k := range res.byKind {
		res.byKind[k] = m.failed[k].Load()
	}
	res.examples = m.examples
	if d := lb.down(); !d.IsZero() {
		res.lbDown = d.Sub(signalAt)
	}
	if srv.stats != nil {
		st := srv.stats()
		res.stats = &st
	}
	return res, ctx.Err()
}

// fmtDur formats a duration in seconds with two decimals.
func fmtDur(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
