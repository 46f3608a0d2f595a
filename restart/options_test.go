package restart

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/drainhttp/drainhttp"
)

func TestNew_RejectsNegativeDurations(t *testing.T) {
	for _, opts := range []Options{
		{UpgradeTimeout: -time.Second},
		{ParentShutdownTime: -time.Nanosecond},
	} {
		// Validation comes first, so the real constructor makes no
		// tableflip.Upgrader here.
		if _, err := New(opts); !errors.Is(err, drainhttp.ErrInvalidOption) {
			t.Errorf("New(%+v) = %v, want drainhttp.ErrInvalidOption", opts, err)
		}
	}
}

func TestNew_NamesItsDefaultsAndPassesThemToTableflip(t *testing.T) {
	var got tableflip.Options
	fu := newFakeUpgrader()
	r, err := newRestarter(Options{PIDFile: "/run/x.pid"}, env{
		newUpgrader:     func(o tableflip.Options) (upgrader, error) { got = o; return fu, nil },
		activationFiles: func() []*os.File { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if got.UpgradeTimeout != DefaultUpgradeTimeout || DefaultUpgradeTimeout != tableflip.DefaultUpgradeTimeout || got.PIDFile != "/run/x.pid" {
		t.Errorf("tableflip options %+v, want DefaultUpgradeTimeout (tableflip's) and the PID file", got)
	}
	if r.opts.ParentShutdownTime != DefaultParentShutdownTime || DefaultParentShutdownTime != 2*time.Minute {
		t.Errorf("ParentShutdownTime %v, want DefaultParentShutdownTime (2m)", r.opts.ParentShutdownTime)
	}
	if r.log == nil {
		t.Error("a nil Logger was not replaced by a silent one")
	}
}

func TestNew_WrapsWhyHotRestartIsUnavailable(t *testing.T) {
	_, err := newRestarter(Options{}, env{
		newUpgrader: func(tableflip.Options) (upgrader, error) {
			return nil, tableflip.ErrNotSupported
		},
	})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, tableflip.ErrNotSupported) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping tableflip.ErrNotSupported", err)
	}
	if !strings.HasPrefix(err.Error(), "drainhttp/restart: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
}

func TestErrors_ArePrefixedWithThePackage(t *testing.T) {
	for _, err := range []error{ErrUnavailable, ErrListen, ErrReadyFailed, ErrNotServing,
		ErrUpgradeFailed, ErrUpgradeInProgress, ErrStopped} {
		if !strings.HasPrefix(err.Error(), "drainhttp/restart: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
	}
}
