package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox"
)

func TestNotifySignalWakesDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.PollInterval = time.Hour // only the signal can deliver
	r, _ := b.start(t)
	require.Eventually(t, r.Ready, 10*time.Second, 5*time.Millisecond, "LISTEN connection up")

	sig, err := outbox.NewNotifySignaler(b.db.Pool, b.cfg.Channel)
	require.NoError(t, err)
	var committed []outbox.AppendResult
	for i := range 5 {
		committed = append(committed, b.appendWithSignal(t, sig, fmt.Sprintf("org-%d", i)))
	}
	b.waitMessages(t, len(committed), 10*time.Second)
	b.requireExactlyOnce(t, committed)
}
