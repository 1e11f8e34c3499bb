package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultTokenFile is where serve reads its bearer token unless told
// otherwise: root's alone, beside kato.toml. Tests change it.
var defaultTokenFile = "/etc/kato/serve.token"

// readTokenFile reads the bearer token. The file must be a regular file
// owned by the user serve runs as (root) that nobody else can read or
// write. A missing file at the default path means no token: actions are
// refused. Anything else wrong with it stops serve.
func readTokenFile(path string, explicit bool) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	switch {
	case !ok || !info.Mode().IsRegular():
		return "", fmt.Errorf("token file %s is not a regular file", path)
	case int(st.Uid) != os.Geteuid():
		return "", fmt.Errorf("token file %s belongs to uid %d, not to uid %d that serve runs as: chown it", path, st.Uid, os.Geteuid())
	case info.Mode().Perm()&0o077 != 0:
		return "", fmt.Errorf("token file %s has mode %04o, readable or writable by others: chmod 600 it", path, info.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	token := strings.TrimSpace(string(data))
	if len(token) < 16 {
		return "", fmt.Errorf("token file %s holds a token of %d characters: at least 16 are needed (e.g. `openssl rand -hex 32`)", path, len(token))
	}
	return token, nil
}

// isLoopback reports whether the listen address only reaches this host.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// sessions are the dashboard's logins: a browser that gave the token gets
// a session cookie, and each session its own CSRF token that every form
// posts back.
type sessions struct {
	mu  sync.Mutex
	m   map[string]session
	ttl time.Duration
}

type session struct {
	csrf    string
	expires time.Time
}

const sessionCookie = "kato_session"

func newSessions() *sessions { return &sessions{m: map[string]session{}, ttl: 12 * time.Hour} }

func (s *sessions) create() (id string, csrf string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	id, csrf = randomHex(32), randomHex(32)
	s.m[id] = session{csrf: csrf, expires: now.Add(s.ttl)}
	return id, csrf
}

// lookup returns the session of the request's cookie, if it is live.
func (s *sessions) lookup(r *http.Request) (id string, sess session, ok bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok = s.m[c.Value]
	if !ok || time.Now().After(sess.expires) {
		return "", session{}, false
	}
	return c.Value, sess, true
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// authState is who a request comes from.
type authState struct {
	bearer   bool   // a valid Authorization: Bearer header
	session  bool   // a live session cookie
	csrf     string // the session's CSRF token
	badToken bool   // a bearer header with the wrong token
}

func (a authState) authenticated() bool { return a.bearer || a.session }

func checkToken(token, given string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(given)) == 1
}

func (d *dashboard) authOf(r *http.Request) authState {
	var st authState
	if h := r.Header.Get("Authorization"); h != "" {
		given, ok := strings.CutPrefix(h, "Bearer ")
		st.bearer = ok && checkToken(d.token, given)
		st.badToken = !st.bearer
	}
	if _, sess, ok := d.sessions.lookup(r); ok {
		st.session, st.csrf = true, sess.csrf
	}
	return st
}

// authorizeAction decides whether a POST may change anything: 401 without
// credentials (or with a wrong token), 403 when actions are disabled (no
// token configured) or a session's form lacks its CSRF token. A request
// with a valid bearer header needs no CSRF token: browsers never add that
// header on their own.
func (d *dashboard) authorizeAction(w http.ResponseWriter, r *http.Request) bool {
	if d.token == "" {
		http.Error(w, "actions are disabled: serve has no token (see --token-file)", http.StatusForbidden)
		return false
	}
	st := d.authOf(r)
	if st.bearer {
		return true
	}
	if !st.session || st.badToken {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kato-manager"`)
		http.Error(w, "log in with the token first", http.StatusUnauthorized)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(st.csrf)) != 1 {
		http.Error(w, "missing or wrong CSRF token: reload the page", http.StatusForbidden)
		return false
	}
	return true
}

// authorizeRead lets reads through on a loopback address; elsewhere they
// need the token, as actions do.
func (d *dashboard) authorizeRead(w http.ResponseWriter, r *http.Request) bool {
	if d.openReads || d.authOf(r).authenticated() {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="kato-manager"`)
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		d.renderStatus(w, r, http.StatusUnauthorized, "login", d.base(r, "Log in"))
		return false
	}
	http.Error(w, "this address needs the token", http.StatusUnauthorized)
	return false
}
