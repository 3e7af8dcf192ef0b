// Package console is outbox's operator console: an http.Handler that shows
// an installation's backlog, organizations, events and dead letters, and
// lets an operator requeue or purge dead letters and pause or resume an
// organization. A service mounts it in its own admin server; `outbox
// console --http-addr ADDR` serves it alone.
//
// Pages are rendered on the server from html/template with embedded assets:
// no JavaScript, no CDN, a strict Content-Security-Policy, a dark mode that
// follows the system. It reads through relay.Admin and never holds a query
// longer than a page: the installation-wide counts (one pass over the
// pending events) are a summary refreshed in the background, and every
// other query is bounded by a limit and an index.
//
// Safe by default: with Config.Token set, every page needs a session got by
// logging in with it (a cookie: HttpOnly, SameSite=Strict, Secure when
// served over TLS); with no token, it serves anyone who reaches it, so only
// serve it so on a loopback address (the outbox command refuses otherwise).
// Every mutating request needs the session's CSRF token and a same-origin
// request, and is logged with what it changed and how many rows.
// Config.ReadOnly hides and refuses every action. Payloads, which may hold
// personal data, are shown only on request.
//
// Mounting it:
//
//	c, err := console.New(pool, console.Config{Token: os.Getenv("OUTBOX_CONSOLE_TOKEN"), Prefix: "/outbox"})
//	if err != nil { ... }
//	defer c.Close()
//	mux.Handle("/outbox/", c)
package console
