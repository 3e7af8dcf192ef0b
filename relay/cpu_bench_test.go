package relay_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// cpuMeter measures the CPU a benchmark's timed work costs: this process's
// (relay, SDK and the Svix fake) and PostgreSQL's (every process named
// postgres, read from /proc; a backend that exits meanwhile is not
// counted, so that figure is a floor).
type cpuMeter struct {
	self, server time.Duration
	serverOK     bool
}

// startCPU samples the CPU used so far.
func startCPU(b *testing.B) cpuMeter {
	b.Helper()
	var m cpuMeter
	m.self = selfCPU(b)
	m.server, m.serverOK = serverCPU()
	return m
}

// report adds the CPU per event since m was taken, in microseconds:
// cpu-µs/event (this process) and pg-cpu-µs/event (PostgreSQL, where
// /proc can be read).
func (m cpuMeter) report(b *testing.B, events int) {
	b.Helper()
	b.ReportMetric(float64((selfCPU(b)-m.self).Microseconds())/float64(events), "cpu-µs/event")
	if server, ok := serverCPU(); ok && m.serverOK {
		b.ReportMetric(float64((server-m.server).Microseconds())/float64(events), "pg-cpu-µs/event")
	}
}

func selfCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is Linux's USER_HZ, the unit of /proc/PID/stat's times.
const clockTicks = 100

// serverCPU sums the user and system time of the processes named postgres.
func serverCPU() (time.Duration, bool) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return 0, false
	}
	var ticks int64
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended
		}
		open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || end < open || string(data[open+1:end]) != "postgres" {
			continue
		}
		// After "(comm) ": state is field 3; utime and stime are 14 and 15.
		fields := bytes.Fields(data[end+1:])
		if len(fields) < 13 {
			continue
		}
		for _, f := range fields[11:13] {
			n, err := strconv.ParseInt(string(f), 10, 64)
			if err == nil {
				ticks += n
			}
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks, true
}
