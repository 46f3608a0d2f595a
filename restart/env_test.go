package restart

import (
	"strings"
	"testing"
)

// The real environment, tableflip and all, is exercised by Example, since
// tableflip allows one Upgrader per process.

func TestTableflipUpgrader_RefusesAListenerWithoutAFile(t *testing.T) {
	var u tableflipUpgrader // add checks the listener before using tableflip
	err := u.add("tcp", ":1", newPipeListener(":1"))
	if err == nil || !strings.Contains(err.Error(), "has no file descriptor to pass on") {
		t.Errorf("add(pipe listener) = %v, want a refusal", err)
	}
}
