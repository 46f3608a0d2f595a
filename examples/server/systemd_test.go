package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unitFile parses a systemd unit file into its settings, joining
// backslash-continued lines. Repeated settings keep every value.
func unitFile(t *testing.T, name string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	settings := make(map[string][]string)
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not a setting", name, line)
		}
		settings[k] = append(settings[k], strings.TrimSpace(v))
	}
	return settings
}

// TestSystemdUnits_MatchTheServersFlags checks examples/systemd against the
// server: it cannot run systemd here, but it can check that the service's
// command line parses, and agrees with the socket unit and the PID file.
func TestSystemdUnits_MatchTheServersFlags(t *testing.T) {
	service := unitFile(t, "drainhttp-example.service")
	socket := unitFile(t, "drainhttp-example.socket")

	exec := strings.Fields(service["ExecStart"][0])
	cfg, err := parseFlags(exec[1:], io.Discard)
	if err != nil {
		t.Fatalf("ExecStart %q: %v", exec, err)
	}
	if got, want := strings.Join(socket["ListenStream"], " "), cfg.addr+" "+cfg.admin; got != want {
		t.Errorf("the socket unit listens on %q, the server on %q", got, want)
	}
	if got := service["PIDFile"]; len(got) != 1 || got[0] != cfg.pidFile || cfg.pidFile == "" {
		t.Errorf("PIDFile=%q, the server writes %q", got, cfg.pidFile)
	}
	if got := service["ExecReload"]; len(got) != 1 || got[0] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%q, want SIGHUP to the main process", got)
	}
	if got := service["Requires"]; len(got) != 1 || got[0] != "drainhttp-example.socket" {
		t.Errorf("Requires=%q, want the socket unit", got)
	}
	if !strings.HasPrefix(cfg.pidFile, "/run/"+service["RuntimeDirectory"][0]+"/") {
		t.Errorf("the PID file %q is not in the RuntimeDirectory %q", cfg.pidFile, service["RuntimeDirectory"])
	}
	// Drain's bound: the shutdown delay (with -adaptive, its maximum), the
	// window, about a second to close the listeners, the deadline.
	drain := cfg.shutdownDelay + cfg.drainTime + time.Second + cfg.drainTimeout
	stop, err := time.ParseDuration(strings.TrimSuffix(service["TimeoutStopSec"][0], "s") + "s")
	if err != nil || stop <= drain {
		t.Errorf("TimeoutStopSec=%q (%v) does not leave time for a drain of %v", service["TimeoutStopSec"], err, drain)
	}
	// After a handoff there is no delay, and the listeners are the new
	// process's.
	if handoff := cfg.drainTime + cfg.drainTimeout; cfg.parentShutdownTime <= handoff {
		t.Errorf("-parent-shutdown-time %v cuts a drain of %v short", cfg.parentShutdownTime, handoff)
	}
	if !cfg.adaptive {
		t.Error("the service turns the adaptive shutdown off, which its comments count on")
	}
	if got := service["KillMode"]; len(got) == 1 && got[0] != "control-group" {
		t.Errorf("KillMode=%s would not let an old process still draining finish", got[0])
	}
}
