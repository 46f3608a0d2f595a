// Command drainhttp is bench/binsize.sh's hello world on drainhttp.Server,
// used as the README shows it and nothing more.
package main

import (
	"io"
	"log"
	"log/slog"
	"net/http"
	"time"

	"github.com/drainhttp/drainhttp"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello\n")
	})
	srv := &drainhttp.Server{
		Addr:          ":8080",
		Handler:       mux,
		ShutdownDelay: 5 * time.Second,
		DrainTime:     30 * time.Second,
		DrainTimeout:  5 * time.Second,
		Logger:        slog.Default(),
	}
	if err := srv.ListenAndServeUntilSignal(); err != nil {
		log.Fatal(err)
	}
}
