package relay_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/outboxrelay/outbox/internal/pgtest"
)

// costMeter measures what a benchmark case's drain costs, from after its
// preload to the end of the drain (its last settlements and the relay's
// stop included, which come after the timer stops): the CPU of this process
// (relay, SDK and the Svix fake) and of PostgreSQL (every process named
// postgres, read from /proc; a backend that exits meanwhile is not
// counted, so that figure is a floor), and the WAL PostgreSQL wrote.
type costMeter struct {
	self, server time.Duration
	serverOK     bool
	db           *pgtest.DB // nil: no WAL (a loop with no database)
	walStart     string     // pg_lsn
}

// dbOf returns db when the case uses it, else nil.
func dbOf(uses bool, db *pgtest.DB) *pgtest.DB {
	if !uses {
		return nil
	}
	return db
}

// startCost samples the CPU used so far and, with a db, its WAL position.
func startCost(b *testing.B, db *pgtest.DB) costMeter {
	b.Helper()
	m := costMeter{db: db}
	m.self = selfCPU(b)
	m.server, m.serverOK = serverCPU()
	if db != nil {
		if err := db.Pool.QueryRow(b.Context(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&m.walStart); err != nil {
			b.Fatalf("WAL position: %v", err)
		}
	}
	return m
}

// report adds the costs per event since m was taken: cpu-µs/event (this
// process), pg-cpu-µs/event (PostgreSQL, where /proc can be read) and, with
// a db, wal-B/event.
//
// The WAL figure counts the database's writes (row versions, index
// entries, locks, commits), and the CPU others take from the machine does
// not change it: pairs of runs gave the same WAL to within 1-4% where
// events/s moved by a quarter or more. It counts every writer of the
// cluster, so nothing else may write to it meanwhile; autovacuum may,
// rarely, and a checkpoint during the case would add full-page images
// (benchSetup starts each case with one, so that none comes on its own).
func (m costMeter) report(b *testing.B, events int) {
	b.Helper()
	b.ReportMetric(float64((selfCPU(b)-m.self).Microseconds())/float64(events), "cpu-µs/event")
	if server, ok := serverCPU(); ok && m.serverOK {
		b.ReportMetric(float64((server-m.server).Microseconds())/float64(events), "pg-cpu-µs/event")
	}
	if m.db == nil {
		return
	}
	var wal float64
	if err := m.db.Pool.QueryRow(b.Context(),
		`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)`, m.walStart).Scan(&wal); err != nil {
		b.Fatalf("WAL written: %v", err)
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
