package outboxtemporal_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/pgtest"
	"github.com/outboxrelay/outbox/outboxtemporal"
	"github.com/outboxrelay/outbox/outboxtest/svixtest"
	"github.com/outboxrelay/outbox/relay"
)

// Register the relay workflow and its drain activity on a worker. Here the
// worker is the SDK's test environment, so the example runs without a
// Temporal server; with one, pass the worker.Worker polling
// outboxtemporal.DefaultTaskQueue.
func ExampleRegister() {
	ctx := context.Background()
	pool := pgtest.ForExample().Pool            // your *pgxpool.Pool, migrated
	svixAPI := svixtest.New(svixtest.Options{}) // stands in for Svix here
	defer svixAPI.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	r, err := relay.New(pool, relay.Config{SvixToken: svixAPI.Token(), SvixServerURL: svixAPI.URL(), Logger: quiet})
	if err != nil {
		panic(err)
	}
	for _, action := range []string{"login", "logout"} {
		_, err := outbox.Append(ctx, pool, outbox.AppendParams{
			OrganizationID: "org_42", EventType: outbox.EventTypeAuditLogCreated, Payload: map[string]any{"action": action},
		})
		if err != nil {
			panic(err)
		}
	}

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(quiet))
	w := suite.NewTestWorkflowEnvironment() // worker.New(client, outboxtemporal.DefaultTaskQueue, worker.Options{})
	if err := outboxtemporal.Register(w, r, outboxtemporal.Options{}); err != nil {
		panic(err)
	}
	// What the Signaler's signal-with-start does on a server.
	w.ExecuteWorkflow(outboxtemporal.WorkflowName, outboxtemporal.RelayInput{OrganizationID: "org_42"})

	fmt.Println("workflow completed:", w.IsWorkflowCompleted(), w.GetWorkflowError())
	for _, m := range svixAPI.Messages() {
		fmt.Println(m.App, m.EventType, string(m.Payload))
	}
	// Output:
	// workflow completed: true <nil>
	// org_42 audit_log.created {"action":"login"}
	// org_42 audit_log.created {"action":"logout"}
}
