package drainhttp

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzServerOptions: whatever the options, validation does not panic, and
// either accepts them, when every one is in range, or returns an
// ErrInvalidOption whose message names an invalid field.
func FuzzServerOptions(f *testing.F) {
	f.Add(int64(0), int64(0), int64(0), 0.0, uint8(0), int64(0), 0.0, int64(0), int64(0), 0.0, 0.0, int64(0), 0.0, 0, 0, int64(0), int64(0))
	f.Add(int64(-1), int64(5), int64(1), 0.5, uint8(1), int64(10), 0.1, int64(3), int64(4), 0.02, 10.0, int64(1), 0.5, 503, 3, int64(1), int64(2))
	f.Add(int64(1), int64(-5), int64(-1), 1.5, uint8(9), int64(-10), 1.0, int64(-3), int64(-4), 0.5, -1.0, int64(-1), -0.5, 200, -3, int64(-1), int64(-2))
	nan, inf := math.NaN(), math.Inf(1)
	f.Add(int64(0), int64(0), int64(0), nan, uint8(0), int64(0), nan, int64(0), int64(0), nan, nan, int64(0), nan, 0, 0, int64(0), int64(0))
	f.Add(int64(0), int64(0), int64(0), inf, uint8(0), int64(0), inf, int64(0), int64(0), inf, inf, int64(0), inf, 0, 0, int64(0), int64(0))
	f.Fuzz(func(t *testing.T, drainTime, drainTimeout, delay int64, jitter float64, strategy uint8,
		age int64, ageJitter float64, grace, maxReq int64, chance, rate float64,
		retryDelay int64, retryAfter float64, retryStatus, probes int, quiet, _ int64) {
		s := &Server{
			DrainTime: time.Duration(drainTime), DrainTimeout: time.Duration(drainTimeout),
			ShutdownDelay: time.Duration(delay), DrainTimeJitter: jitter, Strategy: Strategy(strategy),
			ConnPolicy: ConnPolicy{MaxConnectionAge: time.Duration(age), MaxConnectionAgeJitter: ageJitter,
				MaxConnectionAgeGrace: time.Duration(grace), MaxRequestsPerConnection: maxReq, GoAwayChance: chance},
			ProactiveEndRate: rate,
			RetryAfter:       &RetryAfter{After: retryAfter, Status: retryStatus, Delay: time.Duration(retryDelay)},
			Adaptive:         &AdaptiveShutdown{Probes: probes, Quiet: time.Duration(quiet)},
		}
		invalid := map[string]bool{
			"DrainTime":                drainTime < 0,
			"DrainTimeout":             drainTimeout < 0,
			"ShutdownDelay":            delay < 0,
			"DrainTimeJitter":          !(jitter >= 0 && jitter <= 1),
			"strategy":                 strategy > 1,
			"MaxConnectionAge":         age < 0,
			"MaxConnectionAgeJitter":   !(ageJitter >= 0 && ageJitter < 1),
			"MaxConnectionAgeGrace":    grace < 0,
			"MaxRequestsPerConnection": maxReq < 0,
			"GoAwayChance":             !(chance >= 0 && chance <= MaxGoAwayChance),
			"ProactiveEndRate":         !(rate >= 0) || math.IsInf(rate, 1),
			"RetryAfter.After":         !(retryAfter >= 0 && retryAfter <= 1),
			"RetryAfter.Status":        retryStatus != 0 && (retryStatus < 400 || retryStatus > 599),
			"RetryAfter.Delay":         retryDelay < 0,
			"Adaptive.Probes":          probes < 0,
			"Adaptive.Quiet":           quiet < 0,
		}
		anyInvalid := false
		for _, bad := range invalid {
			anyInvalid = anyInvalid || bad
		}
		_, err := s.Manager()
		switch {
		case err == nil && anyInvalid:
			t.Fatalf("accepted invalid options %v", invalid)
		case err != nil && !anyInvalid:
			t.Fatalf("rejected valid options: %v", err)
		case err != nil:
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("%v does not wrap ErrInvalidOption", err)
			}
			named := false
			for field, bad := range invalid {
				named = named || (bad && strings.Contains(err.Error(), field))
			}
			if !named {
				t.Fatalf("%q names no invalid field of %v", err, invalid)
			}
		}
		s.Stats()
		s.Status()
		s.Close()
	})
}

// FuzzManagerOptions: NewManager accepts exactly the options in range and
// names the field it rejects.
func FuzzManagerOptions(f *testing.F) {
	f.Add(int64(0), uint8(0), 0.0, 0.0)
	f.Add(int64(-1), uint8(2), -0.1, 1.1)
	f.Add(int64(time.Minute), uint8(1), 0.25, 0.5)
	f.Add(int64(0), uint8(0), math.NaN(), math.NaN())
	f.Fuzz(func(t *testing.T, drainTime int64, strategy uint8, fraction, jitter float64) {
		m, err := NewManager(ManagerOptions{DrainTime: time.Duration(drainTime), Strategy: Strategy(strategy),
			ProactiveFraction: fraction, DrainTimeJitter: jitter})
		invalid := map[string]bool{
			"DrainTime":         drainTime < 0,
			"strategy":          strategy > 1,
			"ProactiveFraction": !(fraction >= 0 && fraction <= 1),
			"DrainTimeJitter":   !(jitter >= 0 && jitter <= 1),
		}
		bad := false
		for _, b := range invalid {
			bad = bad || b
		}
		if (err != nil) != bad {
			t.Fatalf("options %v: err %v", invalid, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("%v does not wrap ErrInvalidOption", err)
			}
			return
		}
		m.DrainClose()
		m.Status()
	})
}

// FuzzParseStrategy: ParseStrategy returns a strategy whose String is its
// input, or an ErrInvalidOption quoting it.
func FuzzParseStrategy(f *testing.F) {
	for _, s := range []string{"gradual", "immediate", "", "Gradual", "immediate ", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		st, err := ParseStrategy(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), strconv.Quote(name)) {
				t.Fatalf("ParseStrategy(%q): %v", name, err)
			}
			return
		}
		if st.String() != name {
			t.Fatalf("ParseStrategy(%q) = %v", name, st)
		}
	})
}
