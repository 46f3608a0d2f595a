package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestRunTellsClientsToCloseDuringTheDrainThenShutsDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- run(ctx, l, time.Second, slog.New(slog.DiscardHandler)) }()
	url := "http://" + l.Addr().String()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()

	get := func(path string) *http.Response {
		t.Helper()
		resp, err := c.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get("/"); resp.Close || resp.StatusCode != 200 {
		t.Fatalf("before the drain: %d close=%v", resp.StatusCode, resp.Close)
	}
	cancel() // as SIGTERM would
	deadline := time.Now().Add(5 * time.Second)
	for get("/ready").StatusCode != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("readiness did not fail after the drain started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// As the gradual window runs, responses start closing their
	// connections (with certainty at its end).
	for !get("/").Close {
		if time.Now().After(deadline) {
			t.Fatal("no response closed its connection during the drain window")
		}
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the drain")
	}
}
