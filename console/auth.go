package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// sessionCookie names the session's cookie; it holds a random id, never
// the token.
const sessionCookie = "outbox_console_session"

// session is one logged-in browser (or, with no token, one browser).
type session struct {
	csrf    string
	expires time.Time
}

// sessions keeps the sessions in memory: a restart logs everyone out.
type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[string]session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and sets its cookie on w.
func (s *sessions) create(w http.ResponseWriter, r *http.Request, prefix string) session {
	id, ses := randomToken(), session{csrf: randomToken(), expires: time.Now().Add(s.ttl)}
	s.mu.Lock()
	for k, v := range s.m { // drop the expired ones as we go
		if time.Now().After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[id] = ses
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: cookiePath(prefix), Expires: ses.expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	return ses
}

// lookup returns r's session, if it has a live one.
func (s *sessions) lookup(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ses, ok := s.m[c.Value]
	if !ok || time.Now().After(ses.expires) {
		delete(s.m, c.Value)
		return session{}, false
	}
	return ses, true
}

// end forgets r's session and clears its cookie.
func (s *sessions) end(w http.ResponseWriter, r *http.Request, prefix string) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: cookiePath(prefix), MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

func cookiePath(prefix string) string {
	if prefix == "" {
		return "/"
	}
	return prefix + "/"
}

// equalSecret compares a secret in constant time.
func equalSecret(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// contentSecurityPolicy allows the console's own stylesheet and images and
// nothing else: no script runs on its pages, inline or not.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// chartPolicy is the chart's: an SVG image styles itself inline and runs
// nothing.
const chartPolicy = "default-src 'none'; style-src 'unsafe-inline'"

// secure sets the headers every response carries.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
