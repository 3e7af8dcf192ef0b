package svixtest

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// idempotencyWait is how long a concurrent duplicate waits for the first request.
const idempotencyWait = 5 * time.Second

// idempotencyKeyOf is Svix's cache key: (Authorization, idempotency-key, path+query)
// for POSTs that carry a key, "" otherwise.
func idempotencyKeyOf(r *http.Request) string {
	if r.Method != http.MethodPost {
		return ""
	}
	k := r.Header.Get("idempotency-key")
	if k == "" {
		return ""
	}
	return r.Header.Get("Authorization") + "\x00" + k + "\x00" + r.URL.RequestURI()
}

// idemEntry is a key in flight (res == nil) or a cached 2xx answer.
type idemEntry struct {
	done chan struct{} // closed when the owning request finished
	res  *response     // set, under the cache lock, when a 2xx was cached
}

// idempotencyCache keeps in-flight keys and the most recent successful answers.
type idempotencyCache struct {
	mu      sync.Mutex
	entries map[string]*idemEntry
	order   []string // cached keys, oldest first
	limit   int
}

func newIdempotencyCache(limit int) idempotencyCache {
	return idempotencyCache{entries: map[string]*idemEntry{}, limit: limit}
}

// begin either returns a cached answer, or makes the caller the owner of key (owned
// != nil; it must call end), or, after waiting idempotencyWait for a concurrent
// duplicate, lets the caller run unowned (both nil). ok is false when ctx or stop
// ended the wait.
func (c *idempotencyCache) begin(ctx context.Context, stop <-chan struct{}, key string) (cached *response, owned *idemEntry, ok bool) {
	var timeout *time.Timer
	defer func() {
		if timeout != nil {
			timeout.Stop()
		}
	}()
	for {
		cached, owned, inFlight := c.lookup(key)
		if inFlight == nil {
			return cached, owned, true
		}
		if timeout == nil {
			timeout = time.NewTimer(idempotencyWait)
		}
		select {
		case <-inFlight.done:
		case <-timeout.C:
			return nil, nil, true
		case <-ctx.Done():
			return nil, nil, false
		case <-stop:
			return nil, nil, false
		}
	}
}

// lookup returns exactly one of: the cached answer, a new entry owned by the
// caller, or the entry in flight to wait for.
func (c *idempotencyCache) lookup(key string) (cached *response, owned, inFlight *idemEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	switch {
	case e == nil:
		e = &idemEntry{done: make(chan struct{})}
		c.entries[key] = e
		return nil, e, nil
	case e.res != nil:
		return e.res, nil, nil
	}
	return nil, nil, e
}

// end caches res for key if it is a 2xx, forgets key otherwise, and releases waiters.
func (c *idempotencyCache) end(key string, e *idemEntry, res response) {
	if e == nil {
		return
	}
	c.mu.Lock()
	if c.entries[key] == e {
		if res.ok() {
			e.res = &res
			c.order = append(c.order, key)
			c.evictLocked()
		} else {
			delete(c.entries, key)
		}
	}
	c.mu.Unlock()
	close(e.done)
}

func (c *idempotencyCache) evictLocked() {
	for len(c.order) > c.limit {
		delete(c.entries, c.order[0])
		c.order[0] = ""
		c.order = c.order[1:]
	}
}

// reset forgets every key; owners in flight still release their waiters.
func (c *idempotencyCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = map[string]*idemEntry{}
	c.order = nil
}
