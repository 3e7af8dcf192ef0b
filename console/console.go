package console

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxrelay/outbox/relay"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Console is the operator console's http.Handler. It is safe for
// concurrent use; Close stops its background refreshes.
type Console struct {
	cfg      Config
	admin    *relay.Admin
	summary  *summary
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	handler  http.Handler
	stop     context.CancelFunc
}

// New returns a console reading the outbox tables through pool, or an
// error wrapping ErrInvalidConfig that names the bad field.
func New(pool *pgxpool.Pool, cfg Config) (*Console, error) {
	if pool == nil {
		return nil, fmt.Errorf("console: pool must not be nil: %w", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	admin, err := relay.NewAdmin(pool, relay.AdminConfig{Schema: cfg.Schema})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &Console{
		cfg: cfg, admin: admin, summary: newSummary(ctx, admin, cfg.SummaryInterval),
		sessions: newSessions(cfg.SessionTTL), pages: pages, mux: http.NewServeMux(), stop: stop,
	}
	c.routes()
	var h http.Handler = c.mux
	if cfg.Prefix != "" {
		h = http.StripPrefix(cfg.Prefix, h)
	}
	c.handler = secure(h)
	return c, nil
}

// ServeHTTP serves the console's pages.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

// Close stops the console's background work. Requests after it still work.
func (c *Console) Close() { c.stop() }

func (c *Console) routes() {
	static, _ := fs.Sub(staticFiles, "static")
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.Handle("POST /logout", c.mutating(c.logout))

	c.mux.Handle("GET /{$}", c.reading(c.overview))
	c.mux.Handle("GET /chart.svg", c.reading(c.chart))
	c.mux.Handle("GET /orgs", c.reading(c.organizations))
	c.mux.Handle("GET /orgs/{org}", c.reading(c.organization))
	c.mux.Handle("GET /events", c.reading(c.event))
	c.mux.Handle("GET /dead-letters", c.reading(c.deadLetters))
	c.mux.Handle("POST /dead-letters/{action}", c.mutating(c.actOnDeadLetters))
	c.mux.Handle("POST /orgs/{org}/pause", c.mutating(c.pause))
	c.mux.Handle("POST /orgs/{org}/resume", c.mutating(c.resume))
}

// reading wraps a page: with a token, it needs a session (else the login
// page); without one, it starts a session so that its forms carry a CSRF
// token.
func (c *Console) reading(page func(http.ResponseWriter, *http.Request, session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ses, ok := c.sessions.lookup(r)
		if !ok {
			if c.cfg.Token != "" {
				http.Redirect(w, r, c.path("/login"), http.StatusSeeOther)
				return
			}
			ses = c.sessions.create(w, r, c.cfg.Prefix)
		}
		page(w, r, ses)
	})
}

// mutating wraps an action: a same-origin POST (net/http's
// CrossOriginProtection reads Sec-Fetch-Site and Origin) with the
// session's CSRF token, refused in read-only mode.
func (c *Console) mutating(action func(http.ResponseWriter, *http.Request, session)) http.Handler {
	check := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.ReadOnly {
			http.Error(w, "the console is read-only", http.StatusForbidden)
			return
		}
		ses, ok := c.sessions.lookup(r)
		if !ok {
			http.Error(w, "no session: log in again", http.StatusForbidden)
			return
		}
		if !equalSecret(r.PostFormValue("csrf"), ses.csrf) {
			http.Error(w, "missing or wrong CSRF token: reload the page", http.StatusForbidden)
			return
		}
		action(w, r, ses)
	})
	return http.NewCrossOriginProtection().Handler(check)
}

// path prefixes p with the console's mount point.
func (c *Console) path(p string) string { return c.cfg.Prefix + p }

// render executes a page's template with the common fields.
func (c *Console) render(w http.ResponseWriter, r *http.Request, ses session, name string, status int, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["Prefix"] = c.cfg.Prefix
	data["CSRF"] = ses.csrf
	data["ReadOnly"] = c.cfg.ReadOnly
	data["LoggedIn"] = c.cfg.Token != ""
	data["Page"] = name
	var b strings.Builder
	if err := c.pages[name].ExecuteTemplate(&b, "layout", data); err != nil {
		c.cfg.Logger.Error("console: render page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail renders an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, ses session, status int, err error) {
	if status >= 500 {
		c.cfg.Logger.Error("console: page failed", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, ses, "error", status, map[string]any{"Title": http.StatusText(status), "Error": err.Error()})
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}
