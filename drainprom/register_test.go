package drainprom_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/drainhttp/drainhttp"
	"github.com/drainhttp/drainhttp/drainprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegister_RejectsInvalidArguments(t *testing.T) {
	s := new(drainhttp.Server)
	tests := []struct {
		name   string
		reg    prometheus.Registerer
		s      *drainhttp.Server
		labels prometheus.Labels
	}{
		{"nil Registerer", nil, s, nil},
		{"nil Server", prometheus.NewRegistry(), nil, nil},
		{"invalid server options", prometheus.NewRegistry(), &drainhttp.Server{DrainTimeout: -1}, nil},
		{"const label reason", prometheus.NewRegistry(), s, prometheus.Labels{"reason": "x"}},
		{"const label protocol", prometheus.NewRegistry(), s, prometheus.Labels{"protocol": "x"}},
		{"const label state", prometheus.NewRegistry(), s, prometheus.Labels{"state": "x"}},
		{"const label phase", prometheus.NewRegistry(), s, prometheus.Labels{"phase": "x"}},
		{"reserved label name", prometheus.NewRegistry(), s, prometheus.Labels{"__name__": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := drainprom.Register(tt.reg, tt.s, tt.labels); !errors.Is(err, drainhttp.ErrInvalidOption) {
				t.Errorf("Register: %v, want an error wrapping drainhttp.ErrInvalidOption", err)
			}
			if tt.reg == nil {
				return
			}
			if _, err := drainprom.NewCollector(tt.s, tt.labels); !errors.Is(err, drainhttp.ErrInvalidOption) {
				t.Errorf("NewCollector: %v, want an error wrapping drainhttp.ErrInvalidOption", err)
			}
		})
	}
}

func TestRegister_IsIdempotentPerServerAndLabels(t *testing.T) {
	s := new(drainhttp.Server)
	// Every registration on one registry must use the same const label
	// names (Prometheus wants one label set per metric family), so several
	// servers there are told apart by the label values.
	reg := prometheus.NewPedanticRegistry()
	a := prometheus.Labels{"server": "a"}
	for range 2 {
		if err := drainprom.Register(reg, s, a); err != nil {
			t.Errorf("registering: %v, want nil", err)
		}
	}
	// Through a wrapping Registerer, AlreadyRegisteredError still names
	// the collector: idempotent too.
	if err := drainprom.Register(prometheus.WrapRegistererWith(a, reg), s, nil); err != nil {
		t.Errorf("registering through a wrapper: %v, want nil", err)
	}
	other := new(drainhttp.Server)
	var are prometheus.AlreadyRegisteredError
	if err := drainprom.Register(reg, other, a); !errors.As(err, &are) || !strings.HasPrefix(err.Error(), "drainprom: ") {
		t.Errorf("another server, same labels: %v, want a drainprom error wrapping AlreadyRegisteredError", err)
	}
	if err := drainprom.Register(reg, other, prometheus.Labels{"server": "b"}); err != nil {
		t.Errorf("another server, other label value: %v", err)
	}
	if err := drainprom.Register(reg, other, nil); err == nil || errors.Is(err, drainhttp.ErrInvalidOption) {
		t.Errorf("another server without the label names of the others: %v, want a registry error", err)
	}
	if n, err := testutil.GatherAndCount(reg, "drainhttp_connections_accepted_total"); err != nil || n != 2 {
		t.Errorf("accepted series = %d (%v), want 2 (server=a, server=b)", n, err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestNewCollector_RegistersLikeAnyCollector(t *testing.T) {
	s := new(drainhttp.Server)
	c, err := drainprom.NewCollector(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	// Register recognises a Collector of the same server as its own.
	if err := drainprom.Register(reg, s, nil); err != nil {
		t.Errorf("Register after MustRegister(NewCollector): %v, want nil", err)
	}
	if !reg.Unregister(c) {
		t.Error("Unregister: false, want true")
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("%d series after Unregister (%v), want 0", n, err)
	}
	if got := testutil.CollectAndCount(c, "drainhttp_ready"); got != 1 {
		t.Errorf("CollectAndCount(drainhttp_ready) = %d, want 1", got)
	}
}
