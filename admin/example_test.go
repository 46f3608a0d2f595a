package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/drainhttp/drainhttp"
	"github.com/drainhttp/drainhttp/admin"
)

// Example serves a drainhttp.Server and, on a listener of its own, its admin
// handler; then an operator starts the drain through the admin handler and
// follows it to the end.
func Example() {
	s := &drainhttp.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") }),
		DrainTime: 100 * time.Millisecond,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go s.Serve(l)

	// A plain http.Server (here httptest's) for the admin handler: the
	// drain does not close it.
	adm := httptest.NewServer(admin.New(s, admin.Options{Token: "change-me"}))
	defer adm.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	req, _ := http.NewRequest("POST", adm.URL+"/drain", nil)
	req.Header.Set("Authorization", "Bearer change-me")
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	var st admin.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	fmt.Println(resp.Status, st.State, st.Phase, st.Started != nil, st.Ready)

	<-s.Done()
	st = admin.Snapshot(s)
	fmt.Println(st.State, st.Done)
	for _, pc := range st.Timeline {
		fmt.Println(strings.TrimSpace(pc.Phase + " " + pc.Cause))
	}
	// Output:
	// 202 Accepted draining window true false
	// drained true
	// serving
	// not_ready drain
	// window no_delay
	// closing_listeners window_end
	// closing_connections listeners_closed
	// drained no_connection_left
}

// Example_privateListener is how a program serves the admin handler: on a
// loopback address, with a plain http.Server that outlives the drain, shut
// down once the drain is over.
func Example_privateListener() {
	s := &drainhttp.Server{
		Addr:      ":8080",
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") }),
		DrainTime: 30 * time.Second,
	}
	adminSrv := &http.Server{
		Addr:              "127.0.0.1:9901",
		Handler:           admin.New(s, admin.Options{Token: "change-me"}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go adminSrv.ListenAndServe()

	// Drains on SIGTERM, or on:
	//   curl -XPOST -H 'Authorization: Bearer change-me' 127.0.0.1:9901/drain
	// and shows the drain at http://127.0.0.1:9901/ (or localhost:9901).
	err := s.ListenAndServeUntilSignal()
	adminSrv.Shutdown(context.Background())
	if err != nil {
		slog.Error("serving failed", "err", err)
	}
}
