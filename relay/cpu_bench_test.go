package relay_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// cpuMeter measures what a benchmark's timed work costs: the CPU of this
// process (relay, SDK and the Svix fake) and of PostgreSQL (every process
// named postgres, read from /proc; a backend that exits meanwhile is not
// counted, so that figure is a floor), and the WAL PostgreSQL wrote.
type cpuMeter struct {
	self, server time.Duration
	serverOK     bool
	db           *pgtest.DB
	walStart     string // pg_lsn
}

// startCPU samples the CPU used so far, and db's WAL position.
func startCPU(b *testing.B, db *pgtest.DB) cpuMeter {
	b.Helper()
	m := cpuMeter{db: db}
	m.self = selfCPU(b)
	m.server, m.serverOK = serverCPU()
	if err := db.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&m.walStart); err != nil {
		b.Fatal(err)
	}
	return m
}

// report adds the costs per event since m was taken: cpu-µs/event (this
// process), pg-cpu-µs/event (PostgreSQL, where /proc can be read) and
// wal-B/event. The WAL figure is the steadiest of the three: it counts
// the database's writes (row versions, index entries, locks, commits),
// whatever else the machine does: two runs gave the same WAL to within
// 0.2% where events/s moved by a fifth. It counts every writer of the
// cluster, so nothing else may run on it meanwhile.
func (m cpuMeter) report(b *testing.B, events int) {
	b.Helper()
	b.ReportMetric(float64((selfCPU(b)-m.self).Microseconds())/float64(events), "cpu-µs/event")
	if server, ok := serverCPU(); ok && m.serverOK {
		b.ReportMetric(float64((server-m.server).Microseconds())/float64(events), "pg-cpu-µs/event")
	}
	var wal float64
	if err := m.db.Pool.QueryRow(context.Background(),
		`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)`, m.walStart).Scan(&wal); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(wal/float64(events), "wal-B/event")
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
