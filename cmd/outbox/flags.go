package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxrelay/outbox/internal/sqlname"
	"github.com/outboxrelay/outbox/relay"
)

// dbFlags are the connection flags every database command takes.
type dbFlags struct {
	url    string
	schema string
}

func (d *dbFlags) register(fs *flagSet) {
	fs.StringVar(&d.url, "database-url", "", "PostgreSQL URL (default $DATABASE_URL)")
	fs.StringVar(&d.schema, "schema", "", "schema holding outbox's tables (default: the connection's search_path)")
}

// flagSet is a command's flags and its --help text.
type flagSet struct {
	*flag.FlagSet
	help func()
}

// newFlagSet returns a flag set whose --help prints the summary, the flags
// and the examples to stdout. A flag error prints nothing here: parse
// returns it as one usage line.
func newFlagSet(env *environment, name, summary, examples string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // flag calls it on every error; help is printed by parse
	help := func() {
		fs.SetOutput(env.stdout)
		fmt.Fprintf(env.stdout, "Usage: outbox %s\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
		if examples != "" {
			fmt.Fprintf(env.stdout, "\nExamples:\n%s\n", examples)
		}
		fs.SetOutput(io.Discard)
	}
	return &flagSet{FlagSet: fs, help: help}
}

// parse parses args, flags and positional arguments in any order (so
// "migrate down 1 --schema x" works), turning flag errors into usage
// errors. The positional arguments are left in fs.Args().
func parse(fs *flagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return err
			}
			return usagef("%s: %v (run 'outbox %s --help')", fs.Name(), err, fs.Name())
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// connect opens a pool and checks the server answers, with errors that
// say which of the URL or the server is wrong.
func (d *dbFlags) connect(ctx context.Context, env *environment) (*pgxpool.Pool, error) {
	return d.connectSized(ctx, env, 0)
}

// connectSized is connect with a pool of maxConns connections, unless the
// URL sets pool_max_conns itself; 0 keeps pgxpool's default.
func (d *dbFlags) connectSized(ctx context.Context, env *environment, maxConns int32) (*pgxpool.Pool, error) {
	url := d.url
	if url == "" {
		url = env.getenv("DATABASE_URL")
	}
	if url == "" {
		return nil, usagef("no database: set DATABASE_URL or pass --database-url")
	}
	if rule := sqlname.SchemaRule(d.schema); rule != "" {
		return nil, usagef("--schema %s", rule)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("invalid database URL: %v", redact(err))
	}
	if d.schema != "" {
		// Quoted: a schema name may hold any character.
		cfg.ConnConfig.RuntimeParams["search_path"] = sqlname.Quote(d.schema)
	}
	cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	if maxConns > 0 && !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("invalid database URL: %v", redact(err))
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach the database at %s:%d: %v", cfg.ConnConfig.Host, cfg.ConnConfig.Port, redact(err))
	}
	return pool, nil
}

// admin connects and returns the library's Admin on the schema, and a
// function that closes the connection.
func (d *dbFlags) admin(ctx context.Context, env *environment) (*relay.Admin, func(), error) {
	pool, err := d.connect(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	admin, err := relay.NewAdmin(pool, relay.AdminConfig{Schema: d.schema})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return admin, pool.Close, nil
}

// redact keeps error text on one line.
func redact(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// splitAction takes a subcommand's action word ("list" in "dead-letters
// list --org x") off args: "" when args start with a flag.
func splitAction(args []string) (action string, rest []string) {
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "", args
}

// negated is a boolean flag that sets the opposite of its value: --pages
// (true, the default) for a Config field that turns pages off.
type negated struct{ p *bool }

func (n negated) String() string {
	if n.p == nil {
		return "false" // the zero Value, which flag.PrintDefaults compares the default with
	}
	return strconv.FormatBool(!*n.p)
}

func (n negated) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*n.p = !v
	return nil
}

// IsBoolFlag lets the flag stand alone (--pages), as a flag.BoolVar does.
func (negated) IsBoolFlag() bool { return true }
