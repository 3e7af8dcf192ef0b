// Package testnet holds the network chores tests share: a free loopback
// port for a process to listen on, and the status of an HTTP endpoint.
package testnet

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testnet: free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		tb.Fatalf("testnet: free port: %v", err)
	}
	return port
}

// client gives up on a probe quickly: a test polls again.
var client = &http.Client{Timeout: 2 * time.Second}

// Status returns the HTTP status of a GET of url, or 0 when nothing answers.
func Status(url string) int {
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}
