package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/eventtypes"
	"github.com/outboxrelay/outbox/internal/pgtest"
)

// Login is the payload of the example's event type.
type Login struct {
	UserID string    `json:"userId"`
	Method string    `json:"method" jsonschema:"enum=password,enum=sso"`
	At     time.Time `json:"at"`
}

// In a program: a package-level variable, defined in outbox.DefaultCatalog
// with outbox.DefineEvent.
var exampleCatalog = outbox.NewCatalog()

var userLoggedIn = outbox.DefineEventIn[Login](exampleCatalog, "user.logged_in", outbox.EventTypeInfo{
	Description: "A user logged in.",
	Group:       "user",
})

// Define an event type bound to its payload's Go type, append one in a
// transaction, and read the schema Svix gets.
func ExampleDefineEvent() {
	ctx := context.Background()
	pool := pgtest.ForExample().Pool

	tx, err := pool.Begin(ctx)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback(ctx)
	_, err = userLoggedIn.Append(ctx, tx, "org_42", Login{UserID: "u_1", Method: "sso", At: time.Now()})
	if err != nil {
		panic(err)
	}
	var typ string
	_ = tx.QueryRow(ctx, "SELECT event_type FROM outbox_events WHERE organization_id = 'org_42'").Scan(&typ)
	fmt.Println("appended:", typ)

	// Package eventtypes generates the schema from the Go type the catalog
	// recorded: for Svix (eventtypes.Sync), a catalog file
	// (eventtypes.MarshalCatalog), or a PayloadValidator.
	spec, _ := exampleCatalog.Lookup(userLoggedIn.Name())
	raw, err := eventtypes.SchemaOf(spec)
	if err != nil {
		panic(err)
	}
	var schema struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(raw, &schema)
	fmt.Println("required:", schema.Required)
	fmt.Println("method:", string(schema.Properties["method"]))
	// Output:
	// appended: user.logged_in
	// required: [userId method at]
	// method: {"type":"string","enum":["password","sso"]}
}
