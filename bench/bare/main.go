// Command bare is the benchmark's floor of a Go server (docs/benchmarks.md,
// rows 7 and 8): net/http writing one manifest's bytes from memory with the
// same headers regcache sends, and net/http's file server (sendfile) over a
// directory, nothing else. It runs as its own process, as regcache and
// nginx do, so the load generator in the benchmark's process does not share
// its runtime. It listens on 127.0.0.1, prints its address on stdout, and
// exits when its standard input is closed (the benchmark ending, however
// it ends).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	body := flag.String("manifest", "", "file whose bytes / answers")
	mediaType := flag.String("type", "", "Content-Type of /")
	dgst := flag.String("digest", "", "Docker-Content-Digest of /")
	dir := flag.String("dir", "", "directory served under /files/")
	flag.Parse()
	b, err := os.ReadFile(*body)
	if err != nil {
		log.Fatal(err)
	}
	length := strconv.Itoa(len(b))
	mux := http.NewServeMux()
	mux.Handle("/files/", http.StripPrefix("/files/", http.FileServer(http.Dir(*dir))))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", *mediaType)
		h.Set("Content-Length", length)
		h.Set("Docker-Content-Digest", *dgst)
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	log.Fatal(http.Serve(ln, mux))
}
