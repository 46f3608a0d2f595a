package drainhttp

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// findLogs returns the records with message msg, checking each has keys.
func findLogs(t *testing.T, recs []map[string]any, msg string, keys ...string) []map[string]any {
	t.Helper()
	var found []map[string]any
	for _, r := range recs {
		if r["msg"] == msg {
			for _, k := range keys {
				if _, ok := r[k]; !ok {
					t.Errorf("%q record lacks key %q: %v", msg, k, r)
				}
			}
			found = append(found, r)
		}
	}
	return found
}

// TestServer_LogsDrainProgressEveryFewSecondsWithStableKeys: start,
// phases, progress every 5 s and completion, the drained counts as a
// group (an object for JSON handlers), one key per reason.
func TestServer_LogsDrainProgressEveryFewSecondsWithStableKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		s := &Server{DrainTime: 12 * time.Second, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
		if err := s.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs := logRecords(t, []byte(logs.String()))
		findLogs(t, recs, "drainhttp: drain started", "strategy", "drain_time", "drain_timeout", "shutdown_delay", "adaptive", "handoff", "connections")
		if phases := findLogs(t, recs, "drainhttp: phase", "phase", "cause"); len(phases) != 5 {
			t.Fatalf("phase records: %v, want 5", phases)
		}
		progress := findLogs(t, recs, "drainhttp: draining", "progress", "time_left", "connections", "drained", "forced")
		if len(progress) != 2 || progress[0]["time_left"] != "7s" || progress[1]["time_left"] != "2s" {
			t.Fatalf("progress records of a 12s drain: %v, want two, at 5s and 10s", progress)
		}
		done := findLogs(t, recs, "drainhttp: drain complete", "duration", "drained", "forced", "goaways")
		if len(done) != 1 || done[0]["duration"] != "12s" {
			t.Fatalf("completion records: %v", done)
		}
		drained, ok := done[0]["drained"].(map[string]any)
		if !ok || len(drained) != numReasons || drained["proactive"] != float64(0) {
			t.Fatalf("drained: %v, want an object with every reason", done[0]["drained"])
		}
	})
}

// TestServer_LogsForcedClosesAtWarnWithTheConnection, and each connection
// told to close at Debug.
func TestServer_LogsForcedClosesAtWarnWithTheConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		h := newBlockingHandler()
		s := &Server{Handler: h, DrainTimeout: 100 * time.Millisecond, Protocols: allProtocols(),
			Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		ps := startPipeServer(t, s)
		go func() {
			if resp, err := ps.client("http/1.1").Get("http://pipe/block"); err == nil {
				resp.Body.Close()
			}
		}()
		<-h.entered
		if err := s.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs := logRecords(t, []byte(logs.String()))
		forced := findLogs(t, recs, "drainhttp: connection force-closed", "why", "remote", "protocol", "state", "age")
		if len(forced) != 1 || forced[0]["level"] != "WARN" || forced[0]["why"] != "drain deadline" || forced[0]["state"] != "active" {
			t.Fatalf("forced-close records: %v", forced)
		}
		if told := findLogs(t, recs, "drainhttp: connection told to close", "remote", "protocol", "reason"); len(told) != 1 || told[0]["level"] != "DEBUG" {
			t.Fatalf("per-connection records: %v", told)
		}
	})
}

// TestServer_SummarizesTLSHandshakeErrorsWithoutAnErrorLog: thousands of
// "http: TLS handshake error" lines during a drain become a count and one
// summary line every ten seconds.
func TestServer_SummarizesTLSHandshakeErrorsWithoutAnErrorLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		s := &Server{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
		if _, err := s.Manager(); err != nil {
			t.Fatal(err)
		}
		for range 500 {
			s.srv.ErrorLog.Printf("http: TLS handshake error from 127.0.0.1:1234: EOF")
		}
		time.Sleep(errorSummaryInterval)
		synctest.Wait()
		recs := logRecords(t, []byte(logs.String()))
		sum := findLogs(t, recs, "drainhttp: TLS handshakes failed", "count", "interval", "last")
		if len(sum) != 1 || sum[0]["count"] != float64(500) {
			t.Fatalf("summaries: %v, want one of 500", sum)
		}
		if n := s.Stats().TLSHandshakeErrors; n != 500 {
			t.Fatalf("TLSHandshakeErrors = %d", n)
		}
		s.Close()
	})
}
