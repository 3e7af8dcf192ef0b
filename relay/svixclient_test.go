package relay_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxrelay/outbox/relay"
)

// The SDK wraps the Transport of the client it is given, in place: the
// relay gives it a copy, so a client without a Transport (even
// http.DefaultClient) neither crashes the relay nor changes for the rest of
// the process.
func TestCallersHTTPClientIsLeftAlone(t *testing.T) {
	t.Parallel()
	custom := &http.Transport{}
	tests := []struct {
		name   string
		client *http.Client
	}{
		{"http.DefaultClient", http.DefaultClient},
		{"a client with only a timeout", &http.Client{Timeout: 5 * time.Second}},
		{"a client with its own transport", &http.Client{Transport: custom}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			before := tt.client.Transport
			b.cfg.HTTPClient = tt.client
			committed := b.appendCommitted(t, []string{"org-h"}, 2)
			for range 2 { // every relay.New used to add a wrapper
				_, err := relay.New(b.db.Pool, b.cfg)
				require.NoError(t, err)
			}
			b.start(t)
			b.waitMessages(t, len(committed), 10*time.Second)
			b.requireExactlyOnce(t, committed)
			require.Equal(t, before, tt.client.Transport, "the caller's client is untouched")
		})
	}
	require.Nil(t, http.DefaultClient.Transport)
}
