// Command demo is the hot-upgrade demo server: GET /?sleep=N sleeps N
// seconds and answers "ospid:PID gen:N". It takes its listener from
// tini-hot (LISTEN_FDS), or binds :8080 (or $ADDR) when run alone,
// notifies READY=1 and drains correctly on SIGTERM. DEMO_HOLD_MIB=N makes it
// hold N MiB of anonymous memory, DEMO_SHARED_MIB=N N MiB of shared memory
// (MAP_SHARED|MAP_ANONYMOUS, as a cache shared with workers would be).
// DEMO_CONFIG=FILE names its configuration, read once at start, as an
// application reads its own: GET /config answers what this generation
// read, so that a reload after the file changed shows. Each request that
// sleeps is logged when it starts, so that a test or a person can see
// which process took it.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/tini-hot/tini-hot/hotapp"
)

// held is the memory DEMO_HOLD_MIB and DEMO_SHARED_MIB ask for.
var held, shared []byte

func main() {
	ls, err := hotapp.Listeners()
	if err != nil {
		log.Fatal(err)
	}
	if len(ls) == 0 {
		addr := os.Getenv("ADDR")
		if addr == "" {
			addr = ":8080"
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		ls = []hotapp.Listener{{Name: "http", Listener: l}}
	}
	gen := os.Getenv("TINI_HOT_GENERATION")
	if s := os.Getenv("DEMO_HOLD_MIB"); s != "" {
		// A bigger application, to show the memory headroom check: hold
		// this many MiB of anonymous memory for the process's life.
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			log.Fatalf("DEMO_HOLD_MIB=%s: want a number of MiB", s)
		}
		held = make([]byte, n<<20)
		touch(held)
	}
	if s := os.Getenv("DEMO_SHARED_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			log.Fatalf("DEMO_SHARED_MIB=%s: want a positive number of MiB", s)
		}
		shared, err = syscall.Mmap(-1, 0, n<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_ANON)
		if err != nil {
			log.Fatalf("DEMO_SHARED_MIB=%s: %v", s, err)
		}
		touch(shared)
	}
	var config []byte
	if path := os.Getenv("DEMO_CONFIG"); path != "" {
		if config, err = os.ReadFile(path); err != nil {
			log.Fatalf("DEMO_CONFIG: %v", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		if config == nil {
			http.Error(w, "no DEMO_CONFIG", http.StatusNotFound)
			return
		}
		_, _ = w.Write(config)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if s := r.URL.Query().Get("sleep"); s != "" {
			n, err := strconv.ParseFloat(s, 64)
			if err != nil || n < 0 || n > 3600 {
				http.Error(w, "sleep: want seconds from 0 to 3600", http.StatusBadRequest)
				return
			}
			log.Printf("demo: pid %d generation %s: %s started", os.Getpid(), gen, r.URL.RequestURI())
			time.Sleep(time.Duration(n * float64(time.Second)))
		}
		fmt.Fprintf(w, "ospid:%d gen:%s\n", os.Getpid(), gen)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("demo: pid %d generation %s serving on %s", os.Getpid(), gen, ls[0].Addr())
	if err := hotapp.Serve(context.Background(), srv, ls, hotapp.Options{}); err != nil {
		log.Fatal(err)
	}
	log.Printf("demo: pid %d drained", os.Getpid())
}

// touch writes every page of b, so that it is resident.
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}
