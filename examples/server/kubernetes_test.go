package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drainhttp/drainhttp"
)

// deployment is what TestKubernetesRecipe_NumbersAgree reads from
// examples/kubernetes/deployment.yaml, line by line: the file is simple
// enough not to need a YAML parser.
type deployment struct {
	gracePeriod      time.Duration
	args             []string
	period           time.Duration // readinessProbe.periodSeconds
	failureThreshold int           // readinessProbe.failureThreshold
	preStop          bool
}

var (
	yamlArg = regexp.MustCompile(`^\s*- (-[a-z-]+=\S+)\s*$`)
	yamlKey = regexp.MustCompile(`^(\s*)([A-Za-z]+):\s*(\S*)`)
)

func readDeployment(t *testing.T) deployment {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "kubernetes", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Kubernetes' defaults, for what the file leaves out.
	d := deployment{gracePeriod: 30 * time.Second, period: 10 * time.Second, failureThreshold: 3}
	probeIndent := -1 // the readinessProbe key's indentation, while in its block
	seconds := func(v string) time.Duration {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("deployment.yaml: %q is not a number of seconds", v)
		}
		return time.Duration(n) * time.Second
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := yamlArg.FindStringSubmatch(line); m != nil {
			d.args = append(d.args, m[1])
			continue
		}
		m := yamlKey.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent, key, value := len(m[1]), m[2], m[3]
		if probeIndent >= 0 && indent <= probeIndent {
			probeIndent = -1
		}
		switch {
		case key == "readinessProbe":
			probeIndent = indent
		case key == "terminationGracePeriodSeconds":
			d.gracePeriod = seconds(value)
		case key == "preStop":
			d.preStop = true
		case probeIndent >= 0 && key == "periodSeconds":
			d.period = seconds(value)
		case probeIndent >= 0 && key == "failureThreshold":
			d.failureThreshold = int(seconds(value) / time.Second)
		}
	}
	return d
}

// TestKubernetesRecipe_NumbersAgree checks examples/kubernetes against the
// server and against itself: the server's flags parse, the adaptive delay
// counts as many failed probes as the readiness probe's failureThreshold
// and outlasts them, the grace period covers the longest drain, and the
// README's arithmetic is the deployment's.
func TestKubernetesRecipe_NumbersAgree(t *testing.T) {
	d := readDeployment(t)
	cfg, err := parseFlags(d.args, io.Discard)
	if err != nil {
		t.Fatalf("args %q: %v", d.args, err)
	}
	if !cfg.adaptive {
		t.Error("the recipe turns the adaptive shutdown off, which its README explains")
	}
	if cfg.adaptiveProbes != d.failureThreshold {
		t.Errorf("-adaptive-probes=%d, but the readiness probe's failureThreshold is %d", cfg.adaptiveProbes, d.failureThreshold)
	}
	if d.failureThreshold != drainhttp.DefaultAdaptiveProbes || cfg.adaptiveQuiet != drainhttp.DefaultAdaptiveQuiet {
		t.Errorf("failureThreshold %d and -adaptive-quiet=%v, want the defaults %d and %v",
			d.failureThreshold, cfg.adaptiveQuiet, drainhttp.DefaultAdaptiveProbes, drainhttp.DefaultAdaptiveQuiet)
	}
	probes := time.Duration(d.failureThreshold)*d.period + cfg.adaptiveQuiet
	if cfg.shutdownDelay <= probes {
		t.Errorf("-shutdown-delay=%v does not outlast %d probes %v apart plus -adaptive-quiet (%v)",
			cfg.shutdownDelay, d.failureThreshold, d.period, probes)
	}
	const listenerClose, slack = time.Second, 2 * time.Second
	longest := cfg.shutdownDelay + cfg.drainTime + listenerClose + cfg.drainTimeout
	if d.gracePeriod < longest+slack {
		t.Errorf("terminationGracePeriodSeconds %v does not cover the longest drain, %v, plus %v of slack",
			d.gracePeriod, longest, slack)
	}
	if d.preStop {
		t.Error("the deployment has a preStop hook; the README explains why it needs none")
	}

	readme, err := os.ReadFile(filepath.Join("..", "kubernetes", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sum := regexp.MustCompile(`(?m)^\s+(\d+)\s+>=\s+(\d+)\s+\+\s+(\d+)\s+\+\s+(\d+)\s+\+\s+(\d+)\s+\+\s+(\d+)\s*$`).FindStringSubmatch(string(readme))
	if sum == nil {
		t.Fatal("the README lacks its terminationGracePeriodSeconds arithmetic")
	}
	var n [6]int
	for i := range n {
		n[i], _ = strconv.Atoi(sum[i+1])
	}
	want := [6]int{int(d.gracePeriod / time.Second), int(cfg.shutdownDelay / time.Second), int(cfg.drainTime / time.Second),
		int(listenerClose / time.Second), int(cfg.drainTimeout / time.Second)}
	want[5] = want[0] - want[1] - want[2] - want[3] - want[4]
	if n != want {
		t.Errorf("the README's arithmetic %q, want the deployment's %v", strings.TrimSpace(sum[0]), want)
	}
	mentions := []string{"periodSeconds: " + strconv.Itoa(int(d.period/time.Second)),
		"failureThreshold: " + strconv.Itoa(d.failureThreshold)}
	for _, arg := range d.args {
		for _, flag := range []string{"-shutdown-delay=", "-drain-time=", "-drain-timeout=", "-adaptive-probes=", "-adaptive-quiet="} {
			if strings.HasPrefix(arg, flag) {
				mentions = append(mentions, arg)
			}
		}
	}
	for _, m := range mentions {
		if !strings.Contains(string(readme), m) {
			t.Errorf("the README does not mention %s", m)
		}
	}
}
