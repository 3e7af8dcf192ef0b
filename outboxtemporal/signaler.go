package outboxtemporal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/outboxrelay/outbox"
	"github.com/outboxrelay/outbox/internal/config"
)

// The defaults NewSignaler applies to a zero SignalerConfig field.
const (
	DefaultCoalesceWindow    = 100 * time.Millisecond
	DefaultSignalTimeout     = 5 * time.Second
	DefaultSignalParallelism = 16
)

// SignalerConfig configures a Signaler. Only Client is required.
type SignalerConfig struct {
	// Client is the Temporal client the signals go through. Required.
	Client client.Client
	// TaskQueue is the queue a started workflow's tasks go to: the one the
	// workers with Register poll. Defaults to "outbox" (DefaultTaskQueue).
	TaskQueue string
	// WorkflowIDPrefix is prepended to the organization id to name its
	// workflow. Defaults to "outbox-relay-" (DefaultWorkflowIDPrefix).
	WorkflowIDPrefix string
	// CoalesceWindow merges bursts: after a signal for an organization,
	// further calls for it within the window send nothing at once, and one
	// signal goes when the window ends (so the last commit of a burst is
	// always followed by a signal). A workflow run accepts at most 10,000
	// signals; with the default, one process sends an organization at most
	// 10 a second. Negative: every call signals. Defaults to 100
	// milliseconds.
	CoalesceWindow time.Duration
	// Timeout bounds each signal-with-start call, including the client's
	// own retries. Defaults to 5 seconds.
	Timeout time.Duration
	// Parallelism is how many calls SignalRelays has in flight at once.
	// Defaults to 16.
	Parallelism int
	// Logger receives the failures of signals sent at the end of a window,
	// which have no caller to return them to. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c SignalerConfig) withDefaults() SignalerConfig {
	config.Default(&c.TaskQueue, DefaultTaskQueue)
	config.Default(&c.WorkflowIDPrefix, DefaultWorkflowIDPrefix)
	config.Default(&c.CoalesceWindow, DefaultCoalesceWindow)
	config.Default(&c.Timeout, DefaultSignalTimeout)
	config.Default(&c.Parallelism, DefaultSignalParallelism)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c SignalerConfig) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Rule: fmt.Sprintf(format, args...)})
	}
	if c.Client == nil {
		bad("Client", "must be set")
	}
	if c.Timeout <= 0 {
		bad("Timeout", "must be positive, got %s", c.Timeout)
	}
	if c.Parallelism < 1 {
		bad("Parallelism", "must be at least 1, got %d", c.Parallelism)
	}
	return config.Join("outboxtemporal", errs)
}

// Signaler wakes an organization's relay workflow: SignalWithStartWorkflow
// on workflow id WorkflowIDPrefix+organizationID, which signals the running
// workflow or starts one. The id-conflict policy is left at the server's
// default for signal-with-start (use the running workflow). It is an
// outbox.BatchSignaler, so WithTx signals every organization of a commit
// in one call; combine it with the NOTIFY signaler with
// outbox.MultiSignaler.
//
// Create it with NewSignaler and Close it on shutdown, which sends the
// signals still held by their coalescing window. It is safe for concurrent
// use.
type Signaler struct {
	cfg SignalerConfig

	mu      sync.Mutex
	windows map[string]*window // organizations signalled within CoalesceWindow
	closed  bool
	sends   sync.WaitGroup // signals sent at the end of a window
}

// window is one organization's coalescing window.
type window struct {
	// again: a call came during the window; a signal goes at its end.
	again bool
	timer *time.Timer
}

var _ outbox.BatchSignaler = (*Signaler)(nil)

// NewSignaler returns a Signaler. It checks cfg and returns an error
// wrapping ErrInvalidConfig naming every bad field.
func NewSignaler(cfg SignalerConfig) (*Signaler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Signaler{cfg: cfg, windows: map[string]*window{}}, nil
}

// SignalRelay wakes organizationID's workflow, starting it if none runs. A
// call within CoalesceWindow of the last signal for the organization
// returns nil at once, and its signal goes when the window ends (a failure
// then is logged: the relay's sweep, with Config.Delegate, is the safety
// net for every lost signal).
func (s *Signaler) SignalRelay(ctx context.Context, organizationID string) error {
	if err := outbox.ValidateOrganizationID(organizationID); err != nil {
		return err
	}
	send, err := s.admit(organizationID)
	if err != nil || !send {
		return err
	}
	return s.send(ctx, organizationID)
}

// SignalRelays is SignalRelay for many organizations, Parallelism at a
// time. Its error joins the failed organizations' errors.
func (s *Signaler) SignalRelays(ctx context.Context, organizationIDs []string) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.cfg.Parallelism)
	)
	for _, org := range organizationIDs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.SignalRelay(ctx, org); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close sends at once the signals held by a coalescing window and waits for
// them; later calls return ErrSignalerClosed. It does not close the client.
func (s *Signaler) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var held []string
	for org, w := range s.windows {
		w.timer.Stop() // a window ending now finds the signaler closed and sends nothing
		if w.again {
			held = append(held, org)
		}
		delete(s.windows, org)
	}
	s.mu.Unlock()
	s.sends.Wait() // windows that ended just before
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	var errs []error
	for _, org := range held {
		if err := s.send(ctx, org); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// admit reports whether a call for org should signal now: no window is
// open for it. Otherwise it notes that a signal is owed at the window's
// end.
func (s *Signaler) admit(org string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, fmt.Errorf("outboxtemporal: signal: %w", ErrSignalerClosed)
	}
	if s.cfg.CoalesceWindow < 0 {
		return true, nil
	}
	if w, open := s.windows[org]; open {
		w.again = true
		return false, nil
	}
	s.openWindow(org)
	return true, nil
}

// openWindow opens org's window; s.mu is held.
func (s *Signaler) openWindow(org string) {
	w := &window{}
	w.timer = time.AfterFunc(s.cfg.CoalesceWindow, func() { s.closeWindow(org, w) })
	s.windows[org] = w
}

// closeWindow ends org's window: it sends the signal owed, if any, and
// opens a new window after it; else it forgets the organization.
func (s *Signaler) closeWindow(org string, w *window) {
	s.mu.Lock()
	if s.closed || s.windows[org] != w {
		s.mu.Unlock()
		return
	}
	delete(s.windows, org)
	if !w.again {
		s.mu.Unlock()
		return
	}
	s.openWindow(org)
	s.sends.Add(1)
	s.mu.Unlock()
	defer s.sends.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := s.send(ctx, org); err != nil {
		s.cfg.Logger.Warn("outboxtemporal: signal at the end of a coalescing window failed; the relay's sweep is the safety net",
			"organization_id", org, "error", err)
	}
}

// send signals org's workflow, starting it if needed.
func (s *Signaler) send(ctx context.Context, org string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	opts := client.StartWorkflowOptions{
		ID:        s.cfg.WorkflowIDPrefix + org,
		TaskQueue: s.cfg.TaskQueue,
	}
	if _, err := s.cfg.Client.SignalWithStartWorkflow(ctx, opts.ID, SignalName, nil, opts, WorkflowName, RelayInput{OrganizationID: org}); err != nil {
		return fmt.Errorf("outboxtemporal: signal-with-start %s: %w", opts.ID, err)
	}
	return nil
}
