package drainhttp

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// seededRand returns a deterministic, concurrency-safe Rand for
// ManagerOptions.
func seededRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

func mustManager(t *testing.T, opts ManagerOptions) *Manager {
	t.Helper()
	m, err := NewManager(opts)
	if err != nil {
		t.Fatalf("NewManager(%+v): %v", opts, err)
	}
	return m
}

func mustChild(t *testing.T, parent *Manager, opts ManagerOptions) *Manager {
	t.Helper()
	c, err := parent.NewChild(opts)
	if err != nil {
		t.Fatalf("NewChild(%+v): %v", opts, err)
	}
	return c
}

func TestNewManager_RejectsInvalidOptions(t *testing.T) {
	for _, opts := range []ManagerOptions{
		{DrainTime: -time.Second},
		{Strategy: Strategy(7)},
		{ProactiveFraction: -0.1},
		{ProactiveFraction: 1.5},
		{DrainTimeJitter: -0.5},
		{DrainTimeJitter: 2},
	} {
		if _, err := NewManager(opts); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewManager(%+v) = %v, want ErrInvalidOption", opts, err)
		}
		root := mustManager(t, ManagerOptions{})
		if _, err := root.NewChild(opts); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewChild(%+v) = %v, want ErrInvalidOption", opts, err)
		}
	}
}

func TestParseStrategy_RoundTripsNamesAndRejectsOthers(t *testing.T) {
	for _, s := range []Strategy{Gradual, Immediate} {
		got, err := ParseStrategy(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStrategy(%q) = %v, %v", s.String(), got, err)
		}
	}
	if _, err := ParseStrategy("eventually"); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("ParseStrategy(eventually) = %v, want ErrInvalidOption", err)
	}
}

func TestManager_NeverClosesBeforeDrain(t *testing.T) {
	m := mustManager(t, ManagerOptions{DrainTime: time.Minute})
	for range 1000 {
		if m.DrainClose() {
			t.Fatal("DrainClose true before any drain")
		}
	}
	if !m.Ready() || m.Draining() || m.Progress() != 0 {
		t.Fatalf("Ready=%v Draining=%v Progress=%v before drain", m.Ready(), m.Draining(), m.Progress())
	}
}

func TestManager_ImmediateClosesFromTheStartAndLastsDrainTime(t *testing.T) {
	for _, opts := range []ManagerOptions{
		{Strategy: Immediate, DrainTime: time.Hour},
		{Strategy: Gradual, DrainTime: 0},
	} {
		synctest.Test(t, func(t *testing.T) {
			m := mustManager(t, opts)
			start := time.Now()
			m.StartDrainSequence(nil)
			if !m.DrainClose() || !m.Draining() || m.Ready() {
				t.Fatalf("%+v: DrainClose=%v Draining=%v Ready=%v right after start", opts, m.DrainClose(), m.Draining(), m.Ready())
			}
			<-m.Done()
			if got := time.Since(start); got != opts.DrainTime {
				t.Fatalf("%+v: drain completed after %v, want DrainTime", opts, got)
			}
		})
	}
}

func TestManager_GradualRampIsContinuousAndLinear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drainTime = 10 * time.Minute
		m := mustManager(t, ManagerOptions{DrainTime: drainTime, Rand: seededRand(1)})
		start := time.Now()
		m.StartDrainSequence(nil)
		// Includes points inside Envoy's first whole second, where its
		// integer ramp is still 0.
		for _, at := range []time.Duration{300 * time.Millisecond, drainTime / 4, drainTime / 2, 3 * drainTime / 4, drainTime - time.Second} {
			time.Sleep(time.Until(start.Add(at)))
			const calls = 200_000
			closes := 0
			for range calls {
				if m.DrainClose() {
					closes++
				}
			}
			want := float64(at) / float64(drainTime)
			got := float64(closes) / calls
			// Six standard deviations of a binomial proportion, at least
			// one in a thousand.
			bound := max(6*math.Sqrt(want*(1-want)/calls), 0.001)
			if math.Abs(got-want) > bound {
				t.Errorf("at %v: closed %.4f of requests, want %.4f ± %.4f", at, got, want, bound)
			}
			if p := m.Progress(); math.Abs(p-want) > 1e-9 {
				t.Errorf("at %v: Progress() = %v, want %v", at, p, want)
			}
		}
		time.Sleep(time.Until(start.Add(drainTime)))
		for range 1000 {
			if !m.DrainClose() {
				t.Fatal("DrainClose false at the deadline")
			}
		}
	})
}

func TestManager_DoneRunsExactlyOnceUnderConcurrentStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drainTime = 10 * time.Minute
		m := mustManager(t, ManagerOptions{DrainTime: drainTime})
		start := time.Now()
		var runs [64]atomic.Int32
		var at [64]time.Duration
		var wg sync.WaitGroup
		for i := range runs {
			wg.Go(func() {
				m.StartDrainSequence(func() {
					runs[i].Add(1)
					at[i] = time.Since(start)
				})
			})
		}
		wg.Wait()
		<-m.Done()
		synctest.Wait()
		for i := range runs {
			if n := runs[i].Load(); n != 1 || at[i] != drainTime {
				t.Errorf("done %d ran %d times, at %v; want once at %v", i, n, at[i], drainTime)
			}
		}
	})
}

func TestManager_SecondStartDoesNotRestartTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustManager(t, ManagerOptions{DrainTime: 10 * time.Minute})
		start := time.Now()
		m.StartDrainSequence(nil)
		time.Sleep(4 * time.Minute)
		var doneAt time.Duration
		m.StartDrainSequence(func() { doneAt = time.Since(start) })
		<-m.Done()
		synctest.Wait()
		if doneAt != 10*time.Minute {
			t.Fatalf("second done ran at %v, want 10m0s", doneAt)
		}
		ran := false
		m.StartDrainSequence(func() { ran = true })
		if !ran {
			t.Fatal("done passed after completion did not run at once")
		}
	})
}

func TestManager_JitterStretchesTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustManager(t, ManagerOptions{DrainTime: 10 * time.Minute, DrainTimeJitter: 0.2, Rand: func() float64 { return 0.5 }})
		start := time.Now()
		m.StartDrainSequence(nil)
		<-m.Done()
		if got := time.Since(start); got != 11*time.Minute {
			t.Fatalf("drain with 20%% jitter and rand 0.5 took %v, want 11m0s", got)
		}
	})
}

func TestManager_DrainNowCutsAGradualDrainShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustManager(t, ManagerOptions{DrainTime: 10 * time.Minute, Rand: seededRand(2)})
		var fired atomic.Int32
		for range 100 {
			m.OnDrain(func() { fired.Add(1) })
		}
		start := time.Now()
		m.StartDrainSequence(nil)
		time.Sleep(time.Second)
		if n := fired.Load(); n > 10 {
			t.Fatalf("%d of 100 callbacks fired in the first second of a 10m drain", n)
		}
		m.DrainNow(nil)
		<-m.Done()
		synctest.Wait()
		if time.Since(start) != time.Second || fired.Load() != 100 || !m.DrainClose() {
			t.Fatalf("after DrainNow: completed at %v, %d callbacks fired, DrainClose=%v", time.Since(start), fired.Load(), m.DrainClose())
		}
		if st := m.Status(); st.Strategy != Immediate || st.Progress != 1 || !st.Complete {
			t.Fatalf("Status after DrainNow = %+v", st)
		}
	})
}

func TestManager_HealthCheckFailClosesWithoutDraining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustManager(t, ManagerOptions{DrainTime: time.Minute})
		m.HealthCheckFail()
		if !m.DrainClose() || m.Ready() || m.Draining() || !m.HealthCheckFailed() {
			t.Fatalf("failed: DrainClose=%v Ready=%v Draining=%v", m.DrainClose(), m.Ready(), m.Draining())
		}
		m.HealthCheckOK()
		if m.DrainClose() || !m.Ready() {
			t.Fatalf("ok: DrainClose=%v Ready=%v", m.DrainClose(), m.Ready())
		}
		m.HealthCheckFail()
		m.StartDrainSequence(nil)
		m.HealthCheckOK()
		if m.Ready() {
			t.Fatal("HealthCheckOK made a draining manager Ready")
		}
		<-m.Done()
	})
}

func TestManager_ChildrenDrainWithTheirParent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		root := mustManager(t, ManagerOptions{DrainTime: 10 * time.Minute})
		a := mustChild(t, root, ManagerOptions{Strategy: Immediate})
		b := mustChild(t, root, ManagerOptions{Strategy: Immediate})
		modifyOnly := mustChild(t, root, ManagerOptions{Strategy: Immediate, IgnoreHealthCheck: true})

		a.StartDrainSequence(nil)
		<-a.Done()
		if !a.DrainClose() || root.DrainClose() || b.DrainClose() || root.Draining() || b.Draining() {
			t.Fatal("draining a child leaked to its parent or sibling")
		}

		root.HealthCheckFail()
		if !b.DrainClose() || b.Ready() || modifyOnly.DrainClose() || !modifyOnly.Ready() {
			t.Fatalf("health-check fail: b.DrainClose=%v modifyOnly.DrainClose=%v", b.DrainClose(), modifyOnly.DrainClose())
		}
		root.HealthCheckOK()

		start := time.Now()
		root.StartDrainSequence(nil)
		if !b.Draining() || !modifyOnly.Draining() {
			t.Fatal("children not draining after their parent started")
		}
		late := mustChild(t, root, ManagerOptions{})
		if !late.Draining() {
			t.Fatal("child created during the parent's drain is not draining")
		}
		<-b.Done()
		<-late.Done()
		if got := time.Since(start); got != 10*time.Minute {
			t.Fatalf("children completed %v after the parent's start, want with it at 10m0s", got)
		}
		if !modifyOnly.DrainClose() {
			t.Fatal("child not closing after its parent's drain completed")
		}
	})
}

func TestManager_ProactiveCallbacksSpreadOverTheFirstQuarter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drainTime = 8 * time.Minute
		window := drainTime / 4
		m := mustManager(t, ManagerOptions{DrainTime: drainTime, Rand: seededRand(3)})
		const n = 2000
		var mu sync.Mutex
		var firedAt []time.Duration
		var start time.Time
		cancels := make([]func() bool, n)
		for i := range n {
			cancels[i] = m.OnDrain(func() {
				mu.Lock()
				firedAt = append(firedAt, time.Since(start))
				mu.Unlock()
				if i%10 == 0 {
					t.Errorf("cancelled callback %d fired", i)
				}
			})
		}
		for i := 0; i < n; i += 10 {
			if !cancels[i]() {
				t.Fatalf("cancel %d reported false before the drain", i)
			}
		}
		start = time.Now()
		m.StartDrainSequence(nil)
		time.Sleep(window)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if len(firedAt) != n-n/10 {
			t.Fatalf("%d callbacks fired within the first quarter, want %d", len(firedAt), n-n/10)
		}
		var quarters [4]int
		for _, at := range firedAt {
			if at < 0 || at > window {
				t.Fatalf("callback fired at %v, outside [0, %v]", at, window)
			}
			quarters[min(int(4*at/window), 3)]++
		}
		// Uniform: each quarter of the window holds a quarter of the calls,
		// within six standard deviations.
		want := float64(len(firedAt)) / 4
		bound := 6 * math.Sqrt(want*0.75)
		for q, got := range quarters {
			if math.Abs(float64(got)-want) > bound {
				t.Errorf("quarter %d of the window fired %d callbacks, want %.0f ± %.0f", q, got, want, bound)
			}
		}
		if cancels[1]() {
			t.Error("cancel reported true after the callback fired")
		}
		<-m.Done()
	})
}

func TestManager_ProactiveCallbacksOfImmediateDrainFireAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := mustManager(t, ManagerOptions{Strategy: Immediate, DrainTime: time.Hour})
		var fired atomic.Int32
		for range 50 {
			m.OnDrain(func() { fired.Add(1) })
		}
		m.StartDrainSequence(nil)
		synctest.Wait()
		if fired.Load() != 50 {
			t.Fatalf("%d of 50 callbacks fired at once", fired.Load())
		}
	})
}

func TestManager_LateCallbacksFireWithinWhatRemainsOfTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const drainTime = 8 * time.Minute // proactive window: 2m
		m := mustManager(t, ManagerOptions{DrainTime: drainTime, Rand: seededRand(4)})
		start := time.Now()
		m.StartDrainSequence(nil)
		time.Sleep(90 * time.Second)
		var mu sync.Mutex
		var firedAt []time.Duration
		record := func() {
			mu.Lock()
			firedAt = append(firedAt, time.Since(start))
			mu.Unlock()
		}
		for range 200 {
			m.OnDrain(record)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		mu.Lock()
		for _, at := range firedAt {
			if at < 90*time.Second || at > 2*time.Minute {
				t.Errorf("late callback fired at %v, want within [1m30s, 2m0s]", at)
			}
		}
		if len(firedAt) != 200 {
			t.Errorf("%d of 200 late callbacks fired by the end of the window", len(firedAt))
		}
		firedAt = nil
		mu.Unlock()

		time.Sleep(time.Minute) // past the proactive window
		m.OnDrain(record)
		synctest.Wait()
		mu.Lock()
		if len(firedAt) != 1 || firedAt[0] != 3*time.Minute {
			t.Errorf("callback registered after the window fired at %v, want at once (3m0s)", firedAt)
		}
		mu.Unlock()
		<-m.Done()
	})
}

func TestManager_ChildCallbacksFollowTheParentSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		root := mustManager(t, ManagerOptions{DrainTime: 4 * time.Minute, Rand: seededRand(5)})
		child := mustChild(t, root, ManagerOptions{DrainTime: time.Hour})
		var fired atomic.Int32
		for range 100 {
			child.OnDrain(func() { fired.Add(1) })
		}
		child.StartDrainSequence(nil) // an hour: the first quarter is 15m
		time.Sleep(time.Second)
		root.StartDrainSequence(nil) // four minutes: callbacks due within 1m
		time.Sleep(time.Minute)
		synctest.Wait()
		if fired.Load() != 100 {
			t.Fatalf("%d of 100 child callbacks fired within the parent's window", fired.Load())
		}
		<-child.Done()
	})
}
