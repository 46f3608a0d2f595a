package drainhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// logBuffer collects JSON log records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) records(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// find returns the records with message msg, checking each has keys.
func find(t *testing.T, recs []map[string]any, msg string, keys ...string) []map[string]any {
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

func TestServer_LogsDrainProgressEveryFewSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logBuffer
		s := &Server{DrainTime: 12 * time.Second, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
		if err := s.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs := logs.records(t)
		find(t, recs, "drainhttp: drain started", "strategy", "drain_time", "drain_timeout", "shutdown_delay", "connections")
		progress := find(t, recs, "drainhttp: draining", "progress", "time_left", "connections", "drained", "forced")
		if len(progress) != 2 || progress[0]["time_left"] != "7s" || progress[1]["time_left"] != "2s" {
			t.Fatalf("progress records of a 12s drain: %v, want two, at 5s and 10s", progress)
		}
		if done := find(t, recs, "drainhttp: drain complete", "duration", "drained_by_decision", "drained_proactively", "forced"); len(done) != 1 || done[0]["duration"] != "12s" {
			t.Fatalf("completion records: %v", done)
		}
	})
}

func TestServer_LogsForcedClosesAtWarnWithTheConnection(t *testing.T) {
	var logs logBuffer
	entered := make(chan struct{})
	stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	})
	ts := startServer(t, &Server{Handler: stuck, DrainTimeout: 100 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c, url := ts.client("http/1.1")
	go func() {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	waitDrain(t, ts.drain(), time.Now())
	recs := logs.records(t)
	forced := find(t, recs, "drainhttp: connection force-closed", "why", "remote", "protocol", "state", "age")
	if len(forced) != 1 || forced[0]["level"] != "WARN" || forced[0]["why"] != "drain deadline" || forced[0]["state"] != "active" {
		t.Fatalf("forced-close records: %v", forced)
	}
	if marked := find(t, recs, "drainhttp: connection draining", "remote", "protocol", "reason"); len(marked) != 1 || marked[0]["level"] != "DEBUG" {
		t.Fatalf("per-connection drain records: %v", marked)
	}
}
