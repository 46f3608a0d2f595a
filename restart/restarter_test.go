package restart

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/cloudflare/tableflip"
)

func TestRestarter_StopInAChildThatIsNotReadyLeavesTheParentsSocketsAlone(t *testing.T) {
	fu := newFakeUpgrader()
	fu.hasParent = true
	close(fu.parent)
	r, err := newRestarter(Options{}, env{
		newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
		activationFiles: func() []*os.File { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Stop() // say, the new process failed to load its configuration
	if fu.isStopped() {
		t.Error("a child that never got ready stopped tableflip, which unlinks its parent's Unix sockets")
	}
	if err := r.Upgrade(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Upgrade after Stop = %v, want ErrStopped", err)
	}
	if err := r.Ready(); err != nil {
		t.Fatal(err)
	}
	r.Stop() // ready: it owns the sockets now
	if !fu.isStopped() {
		t.Error("a ready process did not stop tableflip")
	}
}

func TestRestarter_HasParentIsTableflips(t *testing.T) {
	for _, parent := range []bool{false, true} {
		fu := newFakeUpgrader()
		fu.hasParent = parent
		r, err := newRestarter(Options{}, env{
			newUpgrader:     func(tableflip.Options) (upgrader, error) { return fu, nil },
			activationFiles: func() []*os.File { return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.HasParent() != parent {
			t.Errorf("HasParent() = %v, want %v", r.HasParent(), parent)
		}
		r.Stop()
	}
}
