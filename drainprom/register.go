package drainprom

import (
	"errors"
	"fmt"

	"github.com/drainhttp/drainhttp"
	"github.com/prometheus/client_golang/prometheus"
)

// Register registers the metrics of s (see NewCollector) on reg, every one
// carrying constLabels (nil for none).
//
// Like promhttp.InstrumentMetricHandler, Register is idempotent:
// registering the same Server on the same registry with the same
// constLabels again does nothing and returns nil, also through a
// prometheus.WrapRegistererWith wrapper. Registering a different Server
// with the same constLabels on that registry fails with an error wrapping
// prometheus.AlreadyRegisteredError. Several Servers share a registry by
// using the same const label names with different values (Prometheus wants
// one set of label names per metric family, so mixing {"server": "a"} with
// nil on one registry fails). The same Server may be registered on
// several registries; each registration has its own histogram, which
// observes for the server's life, even if it is unregistered from reg.
//
// Register returns an error wrapping drainhttp.ErrInvalidOption if reg or
// s is nil, if the server's options are invalid, or if constLabels is not
// a valid label set (see NewCollector), and the error from reg.Register,
// prefixed "drainprom: ", if that fails otherwise. It is safe to call at
// any time, concurrently with serving.
func Register(reg prometheus.Registerer, s *drainhttp.Server, constLabels prometheus.Labels) error {
	if reg == nil {
		return fmt.Errorf("%w: drainprom.Register with a nil Registerer", drainhttp.ErrInvalidOption)
	}
	c, err := NewCollector(s, constLabels)
	if err != nil {
		return err
	}
	if err := reg.Register(c); err != nil {
		c.stopObserving()
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(*Collector); ok && old.s == s {
				return nil
			}
		}
		return fmt.Errorf("drainprom: registering the metrics: %w", err)
	}
	return nil
}
