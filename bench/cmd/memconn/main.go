// Command memconn measures the memory an idle connection costs a
// drainhttp.Server over a plain http.Server, for bench/memconn.sh.
//
// For each protocol (h1: HTTP/1.1; h2: HTTP/2 over TLS; h2c: HTTP/2 with
// prior knowledge) and each repeat, it starts this binary again as a server
// process (-serve), once as a plain http.Server and once as a
// drainhttp.Server (alternating which goes first), with the same "ok"
// handler. In each it opens one connection, sends one request and closes
// it (so that what a server sets up lazily on its first connection is in
// the baseline), measures, then opens -n connections with net/http's own
// client (Transport.NewClientConn, one connection each), sends one request
// on each, leaves them all idle, and measures again.
//
// A measurement is taken inside the server process, on a second listener
// served by a plain http.Server: five runtime.GC calls and
// debug.FreeOSMemory, then runtime.MemStats' HeapInuse + StackInuse (also
// HeapAlloc, heap objects and goroutines). The client lives in this
// process, so its memory never counts.
//
// Per repeat it prints both servers' figures and, per connection,
//
//	added = (drainhttp(N) - nethttp(N)) / N
//	marginal = ((drainhttp(N) - drainhttp(0)) - (nethttp(N) - nethttp(0))) / N
//
// added is the goal's figure (it also spreads drainhttp's fixed cost over
// the N connections); marginal leaves the fixed cost out. The summary gives
// medians and ranges over the repeats.
//
// With -profile DIR the servers record every allocation
// (runtime.MemProfileRate = 1) and the heap profile taken with the second
// measurement is written to DIR/PROTO-SERVER-rREPEAT.pb.gz, for
// go tool pprof -diff_base. Profiled runs are slower, and their figures
// are kept apart from the unprofiled ones by the script.
//
// memconn -sites -n N NETHTTP.pb.gz DRAINHTTP.pb.gz compares two such
// profiles by allocation site, per connection (see sites).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/drainhttp/drainhttp"
)

// mem is one measurement, taken in the server process.
type mem struct {
	HeapInuse   uint64 `json:"heap_inuse"`
	StackInuse  uint64 `json:"stack_inuse"`
	HeapAlloc   uint64 `json:"heap_alloc"`
	HeapObjects uint64 `json:"heap_objects"`
	Goroutines  int    `json:"goroutines"`
	Go          string `json:"go"`
}

func (m mem) total() float64 { return float64(m.HeapInuse + m.StackInuse) }

// live counts the heap's live objects instead of its spans in use: it
// leaves out the free space of partly used spans, which varies from run
// to run with what the TLS handshakes left behind.
func (m mem) live() float64 { return float64(m.HeapAlloc + m.StackInuse) }

func main() {
	serve := flag.Bool("serve", false, "be the server process (started by memconn itself)")
	which := flag.String("server", "", "-serve: nethttp or drainhttp")
	proto := flag.String("proto", "", "-serve: h1, h2 or h2c")
	addr := flag.String("addr", "127.0.0.1:18090", "server `address`")
	statsAddr := flag.String("stats", "127.0.0.1:18091", "server's measurement `address`")
	n := flag.Int("n", 5000, "idle connections")
	repeats := flag.Int("repeats", 5, "repeats per protocol")
	protos := flag.String("protos", "h1,h2,h2c", "protocols, comma-separated")
	profile := flag.String("profile", "", "`dir`ectory for heap profiles (servers record every allocation)")
	settle := flag.Duration("settle", 500*time.Millisecond, "pause after the connections are open, before measuring")
	sitesMode := flag.Bool("sites", false, "compare two heap profiles given as arguments (net/http's, then drainhttp's, taken with -n connections) by allocation site")
	minSite := flag.Float64("min", 8, "-sites: leave out sites under this many bytes per connection")
	flag.Parse()
	if *sitesMode {
		if flag.NArg() != 2 {
			fatal(errors.New("-sites wants two heap profiles: net/http's, then drainhttp's"))
		}
		if err := sites(flag.Arg(0), flag.Arg(1), *n, *minSite); err != nil {
			fatal(err)
		}
		return
	}
	if *serve {
		runServer(*which, *proto, *addr, *statsAddr, *profile != "")
		return
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			fatal(err)
		}
	}
	c := client{addr: *addr, stats: *statsAddr, n: *n, profile: *profile, settle: *settle}
	if err := c.run(strings.Split(*protos, ","), *repeats); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "memconn:", err)
	os.Exit(1)
}

// runServer serves "ok" on addr as which over proto, and measurements on
// statsAddr, until SIGTERM.
func runServer(which, proto, addr, statsAddr string, profile bool) {
	if profile {
		runtime.MemProfileRate = 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	var protos *http.Protocols // nil: the default, HTTP/1.1 and HTTP/2 over TLS
	var tlsConfig *tls.Config
	switch proto {
	case "h1":
	case "h2":
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned()}}
	case "h2c":
		protos = new(http.Protocols)
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
	default:
		fatal(fmt.Errorf("unknown -proto %q", proto))
	}
	var listenAndServe func() error
	switch which {
	case "nethttp":
		s := &http.Server{Addr: addr, Handler: mux, Protocols: protos, TLSConfig: tlsConfig}
		listenAndServe = s.ListenAndServe
		if tlsConfig != nil {
			listenAndServe = func() error { return s.ListenAndServeTLS("", "") }
		}
	case "drainhttp":
		s := &drainhttp.Server{Addr: addr, Handler: mux, Protocols: protos, TLSConfig: tlsConfig,
			DrainTime: 30 * time.Second, DrainTimeout: 5 * time.Second}
		listenAndServe = s.ListenAndServe
		if tlsConfig != nil {
			listenAndServe = func() error { return s.ListenAndServeTLS("", "") }
		}
	default:
		fatal(fmt.Errorf("unknown -server %q", which))
	}
	go func() {
		if err := listenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			fatal(err)
		}
	}()

	smux := http.NewServeMux()
	smux.HandleFunc("/mem", func(w http.ResponseWriter, r *http.Request) {
		for range 5 {
			runtime.GC()
		}
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		json.NewEncoder(w).Encode(mem{
			HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, HeapAlloc: ms.HeapAlloc,
			HeapObjects: ms.HeapObjects, Goroutines: runtime.NumGoroutine(), Go: runtime.Version(),
		})
	})
	smux.Handle("/heap", pprof.Handler("heap"))
	smux.Handle("/goroutine", pprof.Handler("goroutine"))
	ss := &http.Server{Addr: statsAddr, Handler: smux}
	ss.SetKeepAlivesEnabled(false)
	go func() { fatal(ss.ListenAndServe()) }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	<-sigs
	os.Exit(0)
}

// selfSigned returns a fresh certificate for 127.0.0.1.
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "memconn"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type client struct {
	addr, stats string
	n           int
	profile     string
	settle      time.Duration
}

// result is one server's two measurements in one repeat.
type result struct {
	before, after mem
}

func (r result) perConn(n int) float64 { return (r.after.total() - r.before.total()) / float64(n) }

func (c *client) run(protos []string, repeats int) error {
	fmt.Printf("# memconn: %d idle connections per run, %d repeats per protocol; measurements: HeapInuse+StackInuse after 5 GCs, in the server process\n", c.n, repeats)
	fmt.Printf("# %-4s %-3s %-9s %11s %11s %11s %11s %11s %8s %8s %10s\n", "proto", "rep", "server", "heap0", "stack0", "heapN", "stackN", "heapAllocN", "gor0", "gorN", "B/conn")
	type sum struct{ added, marginal, addedHeap, addedStack, addedLive, addedGor []float64 }
	sums := map[string]*sum{}
	var goVersion string
	for _, proto := range protos {
		s := &sum{}
		sums[proto] = s
		for rep := 1; rep <= repeats; rep++ {
			order := []string{"nethttp", "drainhttp"}
			if rep%2 == 0 {
				order = []string{"drainhttp", "nethttp"}
			}
			res := map[string]result{}
			for _, which := range order {
				r, err := c.measure(proto, which, rep)
				if err != nil {
					return fmt.Errorf("%s %s repeat %d: %w", proto, which, rep, err)
				}
				res[which] = r
				goVersion = r.after.Go
				fmt.Printf("  %-4s %-3d %-9s %11d %11d %11d %11d %11d %8d %8d %10.0f\n", proto, rep, which,
					r.before.HeapInuse, r.before.StackInuse, r.after.HeapInuse, r.after.StackInuse, r.after.HeapAlloc,
					r.before.Goroutines, r.after.Goroutines, r.perConn(c.n))
			}
			d, p := res["drainhttp"], res["nethttp"]
			n := float64(c.n)
			added := (d.after.total() - p.after.total()) / n
			marginal := d.perConn(c.n) - p.perConn(c.n)
			s.added = append(s.added, added)
			s.marginal = append(s.marginal, marginal)
			s.addedHeap = append(s.addedHeap, (float64(d.after.HeapInuse)-float64(p.after.HeapInuse))/n)
			s.addedStack = append(s.addedStack, (float64(d.after.StackInuse)-float64(p.after.StackInuse))/n)
			s.addedGor = append(s.addedGor, float64(d.after.Goroutines-p.after.Goroutines)/n)
			s.addedLive = append(s.addedLive, (d.after.live()-p.after.live())/n)
			fmt.Printf("  %-4s %-3d added %.0f B/conn (heap %.0f, stack %.0f, goroutines %+.2f/conn); live %.0f B/conn; marginal %.0f B/conn\n",
				proto, rep, added, s.addedHeap[len(s.addedHeap)-1], s.addedStack[len(s.addedStack)-1], s.addedGor[len(s.addedGor)-1],
				s.addedLive[len(s.addedLive)-1], marginal)
		}
	}
	fmt.Printf("\n# summary (%s, %d connections): per idle connection, drainhttp over net/http; median (min..max) over %d repeats\n", goVersion, c.n, repeats)
	fmt.Printf("# added: (HeapInuse+StackInuse of drainhttp - of net/http) / N, the goal's figure, split into heap and stack;\n")
	fmt.Printf("# live: the same with HeapAlloc for HeapInuse; marginal: each server's growth from its 0-connection baseline\n")
	fmt.Printf("%-5s %22s %22s %22s %22s %22s %11s\n", "proto", "added B/conn", "of which heap", "of which stack", "live B/conn", "marginal B/conn", "goroutines")
	for _, proto := range protos {
		s := sums[proto]
		fmt.Printf("%-5s %22s %22s %22s %22s %22s %11s\n", proto, stat(s.added), stat(s.addedHeap), stat(s.addedStack), stat(s.addedLive), stat(s.marginal), fmt.Sprintf("%+.2f", median(s.addedGor)))
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func stat(v []float64) string {
	return fmt.Sprintf("%.0f (%.0f..%.0f)", median(v), slices.Min(v), slices.Max(v))
}

// measure runs one server process and measures it before and after the
// idle connections.
func (c *client) measure(proto, which string, rep int) (result, error) {
	var r result
	args := []string{"-serve", "-server", which, "-proto", proto, "-addr", c.addr, "-stats", c.stats}
	if c.profile != "" {
		args = append(args, "-profile", c.profile)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	var err error
	for i := 0; ; i++ {
		if r.before, err = c.mem(); err == nil {
			break
		}
		if i == 100 {
			return r, fmt.Errorf("server did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr := c.transport(proto)
	defer tr.CloseIdleConnections()
	var warm *http.ClientConn
	for i := 0; ; i++ {
		if warm, err = c.open(tr, proto); err == nil {
			break
		}
		if i == 100 {
			return r, fmt.Errorf("warm-up connection: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	warm.Close()
	time.Sleep(200 * time.Millisecond)
	if r.before, err = c.mem(); err != nil {
		return r, err
	}

	conns := make([]*http.ClientConn, c.n)
	errs := make([]error, c.n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			conns[i], errs[i] = c.open(tr, proto)
		}()
	}
	wg.Wait()
	defer func() {
		for _, cc := range conns {
			if cc != nil {
				cc.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	time.Sleep(c.settle)
	if r.after, err = c.mem(); err != nil {
		return r, err
	}
	if c.profile != "" {
		if err := c.fetch("/heap?gc=1", filepath.Join(c.profile, fmt.Sprintf("%s-%s-r%d.pb.gz", proto, which, rep))); err != nil {
			return r, err
		}
		if err := c.fetch("/goroutine?debug=1", filepath.Join(c.profile, fmt.Sprintf("%s-%s-r%d.goroutines.txt", proto, which, rep))); err != nil {
			return r, err
		}
	}
	return r, nil
}

var statsClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 60 * time.Second}

func (c *client) mem() (mem, error) {
	var m mem
	resp, err := statsClient.Get("http://" + c.stats + "/mem")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&m)
	return m, err
}

func (c *client) fetch(path, file string) error {
	resp, err := statsClient.Get("http://" + c.stats + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (c *client) transport(proto string) *http.Transport {
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	switch proto {
	case "h1":
		tr.Protocols.SetHTTP1(true)
	case "h2":
		tr.Protocols.SetHTTP2(true)
	case "h2c":
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return tr
}

// open opens one connection and serves one GET / on it.
func (c *client) open(tr *http.Transport, proto string) (*http.ClientConn, error) {
	scheme, want := "http", "HTTP/2.0"
	switch proto {
	case "h1":
		want = "HTTP/1.1"
	case "h2":
		scheme = "https"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := tr.NewClientConn(ctx, scheme, c.addr)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", scheme+"://"+c.addr+"/", nil)
	if err != nil {
		cc.Close()
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		cc.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && (resp.StatusCode != http.StatusOK || resp.Proto != want) {
		err = fmt.Errorf("got %s %s, want %s 200", resp.Proto, resp.Status, want)
	}
	if err != nil {
		cc.Close()
		return nil, err
	}
	return cc, nil
}
