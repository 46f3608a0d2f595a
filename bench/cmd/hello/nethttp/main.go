// Command nethttp is bench/binsize.sh's baseline: a hello-world
// http.Server, as small as net/http makes it.
package main

import (
	"io"
	"log"
	"net/http"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello\n")
	})
	srv := &http.Server{Addr: ":8080", Handler: mux}
	log.Fatal(srv.ListenAndServe())
}
