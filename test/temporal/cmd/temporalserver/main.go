// Command temporalserver runs temporaltest's Temporal server (in memory,
// one namespace) in a process of its own, so that a benchmark's process
// counts the adapter and its worker, not the server: BenchmarkDelivery's
// mode=temporal_process starts it.
//
// It prints "host:port namespace" on one line once the server is up, then
// serves until its standard input closes (its parent is gone) or it gets
// SIGINT or SIGTERM.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/server/temporaltest"
)

func main() {
	ts := temporaltest.NewServer()
	defer ts.Stop()
	fmt.Printf("%s %s\n", ts.GetFrontendHostPort(), ts.GetDefaultNamespace())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	gone := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(gone) }()
	select {
	case <-stop:
	case <-gone:
	}
}
