package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// sites prints where drainhttp's extra heap goes: the inuse_space and
// inuse_objects of two heap profiles (net/http's and drainhttp's, same N,
// MemProfileRate = 1) by allocation site, drainhttp minus net/http, per
// connection, grouped into what they are for. A site is the allocating
// frame and its callers up to the first drainhttp frame or the first frame
// of net/http's serving loop (Serve, conn.serve, the HTTP/2 server's
// serveConn), so that the same allocation reached through either server
// cancels out. It reads the profiles with go tool pprof -traces -lines.
func sites(basePath, drainPath string, n int, min float64) error {
	base, err := readSites(basePath)
	if err != nil {
		return err
	}
	drain, err := readSites(drainPath)
	if err != nil {
		return err
	}
	type row struct {
		key, group  string
		bytes, objs float64
	}
	var rows []row
	for k := range drain {
		if _, ok := base[k]; !ok {
			base[k] = [2]float64{}
		}
	}
	var total float64
	groups := map[string]float64{}
	for k, b := range base {
		d := drain[k]
		r := row{key: k, group: group(k), bytes: (d[0] - b[0]) / float64(n), objs: (d[1] - b[1]) / float64(n)}
		total += r.bytes
		groups[r.group] += r.bytes
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b row) int {
		if a.group != b.group {
			return strings.Compare(a.group, b.group)
		}
		return -cmpFloat(math.Abs(a.bytes), math.Abs(b.bytes))
	})
	fmt.Printf("# inuse_space, drainhttp minus net/http: %.0f B per connection in all (heap only: goroutine stacks are not in heap profiles)\n", total)
	var names []string
	for g := range groups {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		fmt.Printf("  %8.0f B/conn  %s\n", groups[g], g)
	}
	fmt.Printf("# by site (|B/conn| >= %.0f): B/conn, objects/conn, B/object, site < callers\n", min)
	last := ""
	for _, r := range rows {
		if math.Abs(r.bytes) < min {
			continue
		}
		if r.group != last {
			fmt.Printf("  %s:\n", r.group)
			last = r.group
		}
		per := 0.0
		if r.objs != 0 {
			per = r.bytes / r.objs
		}
		fmt.Printf("    %8.1f %6.2f %6.0f  %s\n", r.bytes, r.objs, per, r.key)
	}
	return nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// group names what an allocation site is for.
func group(key string) string {
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(key, x) {
				return true
			}
		}
		return false
	}
	switch {
	case has("drainhttp.(*tracker).add", "drainhttp.(*tracker).lookup", "drainhttp.(*tracker).connContext", "drainhttp.(*connMap)"):
		return "1 drainhttp's connection record (tracker.add's conn, which is also the ConnContext value, and its connMap entries)"
	case has("drainhttp.(*tracker).serveH2", "drainhttp.newH2Wire"):
		return "2 drainhttp's per-connection HTTP/2 objects (the http.Server literal, h2Conn, h2Wire, closures, listener)"
	case has("http.(*Server).newConn", "trackConn"):
		return "5 the per-connection server's own net/http conn (newConn, conn.serve's contexts and buffers, trackConn)"
	case has("onceSetNextProtoDefaults", "http2ConfigureServer:", "configureHTTP2", "trackListener", "http.(*Server).Serve", "registerConn"):
		return "3 net/http's per-Server state of the per-connection server (HTTP/2 setup, listener and HTTP/2 conn maps, base context)"
	case has("runtime.malg", "runtime.allgadd"):
		return "4 the extra goroutine's g (runtime.malg)"
	case has("http2.(*Server).serveConn", "http2.(*serverConn)", "(*http2Server).serveConn", "(*http2serverConn)", "http2.(*Server).ServeConn", "hpack."):
		return "6 HTTP/2 connection state (net/http's own on both sides; what is left is run-to-run noise)"
	case has("http.(*conn).serve", "http.(*Server).newConn", "trackConn", "http.(*conn)", "http.(*connReader)"):
		return "5 the per-connection server's own net/http conn (newConn, conn.serve's contexts and buffers, trackConn)"
	}
	return "7 other"
}

var (
	sampleRE = regexp.MustCompile(`^\s+(-?[\d.]+)([kMG]?B)?\s+(\S.*)$`)
	frameRE  = regexp.MustCompile(`^(\S+) (\S+):(\d+)`)
	shapeRE  = regexp.MustCompile(`\[go\.shape[^\]]*\]`)
)

// readSites returns inuse_space and inuse_objects by site key.
func readSites(path string) (map[string][2]float64, error) {
	out := map[string][2]float64{}
	for i, idx := range []string{"inuse_space", "inuse_objects"} {
		cmd := exec.Command("go", "tool", "pprof", "-sample_index="+idx, "-traces", "-lines", path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		text, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof %s: %v: %s", path, err, stderr.String())
		}
		var v float64
		var stack []string
		flush := func() {
			if stack != nil {
				k := siteKey(stack)
				e := out[k]
				e[i] += v
				out[k] = e
			}
			stack = nil
		}
		sc := bufio.NewScanner(bytes.NewReader(text))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "-----------+") {
				flush()
				continue
			}
			if stack == nil {
				if m := sampleRE.FindStringSubmatch(line); m != nil {
					v, _ = strconv.ParseFloat(m[1], 64)
					v *= map[string]float64{"": 1, "B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m[2]]
					stack = []string{strings.TrimSpace(m[3])}
				}
				continue
			}
			if s := strings.TrimSpace(line); s != "" {
				stack = append(stack, s)
			}
		}
		flush()
	}
	return out, nil
}

// boundaries are the frames of net/http's serving loop at which a site's
// caller chain stops.
var boundaries = []string{"http.(*Server).Serve:", "http.(*conn).serve:", "net.(*TCPListener).Accept:",
	"http.(*Server).ServeTLS:", "tls.(*listener).Accept:", "http2.(*Server).ServeConn:", "http.(*http2Server).ServeConn:",
	"http.(*Server).serveHTTP2Conn:"}

func siteKey(stack []string) string {
	var k []string
	for _, fr := range stack {
		fr = strings.TrimSuffix(fr, " (inline)")
		fr = shapeRE.ReplaceAllString(fr, "[...]")
		if m := frameRE.FindStringSubmatch(fr); m != nil {
			fn := m[1]
			if i := strings.LastIndexByte(fn, '/'); i >= 0 {
				fn = fn[i+1:]
			}
			fr = fn + ":" + m[3]
		}
		stop := false
		for _, b := range boundaries {
			if strings.HasPrefix(fr, b) {
				fr, stop = strings.TrimSuffix(b, ":"), true
			}
		}
		k = append(k, fr)
		if stop || (strings.Contains(fr, "drainhttp.") && !strings.Contains(fr, "memconn")) || len(k) >= 8 {
			break
		}
	}
	return strings.Join(k, " < ")
}
