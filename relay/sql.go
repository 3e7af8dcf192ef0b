package relay

import (
	"strings"

	"github.com/outboxrelay/outbox/internal/sqlname"
)

// queries holds the relay's SQL (the sql_*.go files) with table names
// qualified by the schema.
type queries struct {
	createLanes, lease, heads, laneStates            string
	settleLanes, settlePages                         settleQueries
	pageLock, pageRead                               string
	dueLanes, newEvents, maxEventID, undiscovered    string
	remaining                                        string
	backlog                                          string
	heartbeat, mourn, orphanedLanes, leave           string
	pruneLock, pruneLanes, pruneRelays               string
	partitions, pruneDefaultPartition                string
	status, listDeadLetters, requeueDeadLetters      string
	purgeDeadLetters, countDeadLetters, deliveryRate string
	pause, resume, pauses, lanes, relays             string
	events                                           eventQueries // sql_events.go

	// schema qualifies the names the relay builds itself (partitions).
	schema sqlname.Schema
}

func newQueries(schema string) queries {
	s := sqlname.Schema(schema)
	expand := func(sql string) string { return withPageLocks(s, s.Expand(sql)) }
	return queries{
		createLanes:           expand(sqlCreateLanes),
		lease:                 expand(sqlLease),
		heads:                 s.Expand(sqlHeads),
		laneStates:            expand(sqlLaneStates),
		settleLanes:           newSettleQueries(s, holds, sqlRelease),
		settlePages:           newSettleQueries(s, pageHolds, sqlPageRelease),
		pageLock:              expand(sqlPageLock),
		pageRead:              s.Expand(sqlPageRead),
		dueLanes:              s.Expand(sqlDueLanes),
		newEvents:             s.Expand(sqlNewEvents),
		maxEventID:            s.Expand(sqlMaxEventID),
		undiscovered:          s.Expand(sqlUndiscovered),
		remaining:             s.Expand(sqlRemaining),
		backlog:               s.Expand(sqlBacklog),
		heartbeat:             s.Expand(sqlHeartbeat),
		mourn:                 s.Expand(sqlMourn),
		orphanedLanes:         s.Expand(sqlOrphanedLanes),
		leave:                 s.Expand(sqlLeave),
		pruneLock:             s.Expand(sqlPruneLock),
		pruneLanes:            s.Expand(sqlPruneLanes),
		pruneRelays:           s.Expand(sqlPruneRelays),
		partitions:            s.Expand(sqlPartitions),
		pruneDefaultPartition: s.Expand(sqlPruneDefaultPartition),
		status:                s.Expand(sqlStatus),
		listDeadLetters:       s.Expand(sqlListDeadLetters),
		requeueDeadLetters:    s.Expand(sqlRequeueDeadLetters),
		purgeDeadLetters:      s.Expand(sqlPurgeDeadLetters),
		countDeadLetters:      s.Expand(sqlCountDeadLetters),
		deliveryRate:          s.Expand(sqlDeliveryRate),
		pause:                 s.Expand(sqlPause),
		resume:                s.Expand(sqlResume),
		pauses:                s.Expand(sqlPauses),
		lanes:                 s.Expand(sqlLanes),
		relays:                s.Expand(sqlRelays),
		events:                newEventQueries(s),
		schema:                s,
	}
}

// settleQueries are the statements of a settlement (sql_settle.go), with
// the check that each row is still held: a lane's lease token, or a page's
// transaction.
type settleQueries struct {
	deliver, deliverNoHistory, retry, deadLetter, release string
}

func newSettleQueries(s sqlname.Schema, fence, release string) settleQueries {
	expand := func(sql string) string { return s.Expand(strings.ReplaceAll(sql, "{fence}", fence)) }
	return settleQueries{
		deliver:          expand(sqlDeliver),
		deliverNoHistory: expand(sqlDeliverNoHistory),
		retry:            expand(sqlRetry),
		deadLetter:       expand(sqlDeadLetter),
		release:          expand(release),
	}
}

// sqlRemaining reports an organization's pending events, counted up to
// $2 (a bounded walk of its index, whatever the backlog), when its head
// event is due, and when its lane is due (its head's due time: the events
// behind the head wait for it) or paused until. $1 org, $2 the most to
// count.
const sqlRemaining = `
SELECT (SELECT count(*) FROM (SELECT 1 FROM {events} e WHERE e.organization_id = $1 LIMIT $2) c),
       (SELECT coalesce(e.next_attempt_at, e.created_at) FROM {events} e
        WHERE e.organization_id >= $1 AND e.organization_id <= $1 ORDER BY e.organization_id, e.id LIMIT 1),
       (SELECT greatest(l.due_at, l.paused_until, ` + suspendedUntil + `) FROM {lanes} l WHERE l.organization_id = $1)`
