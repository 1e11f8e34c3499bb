package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/kato-manager/kato-manager/config"
)

// DefaultTokenFile is where serve reads its bearer token unless told
// otherwise: root's alone, beside kato.toml. Tests change it.
var DefaultTokenFile = "/etc/kato/serve.token"

// ReadTokenFile reads the bearer token. The file must be a regular file
// owned by the user serve runs as (root) that nobody else can read or
// write. A missing file at the default path means no token: actions are
// refused. Anything else wrong with it stops serve.
func ReadTokenFile(path string, explicit bool) (string, error) {
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
	if err := checkTokenStrength(token); err != nil {
		return "", fmt.Errorf("invalid token in %s: %w", path, err)
	}
	return token, nil
}

// minTokenLength is the shortest token serve takes: 32 characters are 128
// bits when each is drawn at random from 16 symbols (hex, the smallest
// alphabet a generator offers); from base64's 64 they are 192.
const minTokenLength = 32

// tokenAlphabet are the characters a bearer token may hold (RFC 6750's
// b64token): what a client can send in an Authorization header unquoted.
const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="

// checkTokenStrength refuses a token shorter than 128 bits of a random
// hex token, or with characters a bearer header cannot carry. Its message
// gives the token's length, never the token.
func checkTokenStrength(token string) error {
	for i, r := range token {
		if !strings.ContainsRune(tokenAlphabet, r) {
			return fmt.Errorf("a token of %d characters whose character %d is none of A-Z a-z 0-9 - . _ ~ + / =: must be made of those only (e.g. `openssl rand -hex 32`)", len(token), i+1)
		}
	}
	if len(token) < minTokenLength {
		return fmt.Errorf("a token of %d characters: must be at least %d characters (128 bits of a random hex token; e.g. `openssl rand -hex 32`)", len(token), minTokenLength)
	}
	return nil
}

// IsLoopback reports whether the listen address only reaches this host.
func IsLoopback(listen string) bool {
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
// posts back and the message its last action left for the next page.
type sessions struct {
	mu  sync.Mutex
	m   map[string]session
	ttl time.Duration
}

type session struct {
	csrf    string
	expires time.Time
	flash   flash
}

// flash is the outcome of an action, kept on the server for the page the
// browser is sent to next: the dashboard shows only messages of its own,
// never text a link carries.
type flash struct {
	notice, error string
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

// setFlash leaves f for the session's next page.
func (s *sessions) setFlash(id string, f flash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.m[id]; ok {
		sess.flash = f
		s.m[id] = sess
	}
}

// takeFlash returns the session's message and forgets it: it is shown once.
func (s *sessions) takeFlash(id string) flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if !ok {
		return flash{}
	}
	f := sess.flash
	sess.flash = flash{}
	s.m[id] = sess
	return f
}

// authState is who a request comes from.
type authState struct {
	bearer    bool   // a valid Authorization: Bearer header
	session   bool   // a live session cookie
	sessionID string // its id
	csrf      string // the session's CSRF token
	badToken  bool   // an Authorization header with the wrong token
}

func (a authState) authenticated() bool { return a.bearer || a.session }

func checkToken(token, given string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(given)) == 1
}

type authKey struct{}

// authOf is who the request comes from, as guard found it. A request that
// did not pass through guard comes from nobody.
func (d *dashboard) authOf(r *http.Request) authState {
	st, _ := r.Context().Value(authKey{}).(authState)
	return st
}

// guard is in front of every handler of serve: it refuses a Host header
// that names none of serve's names (DNS rebinding), checks a bearer
// header against the token, counted as a login attempt and refused with
// 429 over the limit, and finds the request's session.
func (d *dashboard) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.hosts.allows(r.Host) {
			http.Error(w, d.hosts.refusal(r.Host), http.StatusMisdirectedRequest)
			return
		}
		var st authState
		if h := r.Header.Get("Authorization"); h != "" {
			given, isBearer := strings.CutPrefix(h, "Bearer ")
			ok, wait := d.limits.attempt(r.RemoteAddr, func() bool { return isBearer && checkToken(d.token, given) })
			if wait > 0 {
				tooManyAttempts(w, wait)
				return
			}
			st.bearer, st.badToken = ok, !ok
		}
		if id, sess, ok := d.sessions.lookup(r); ok {
			st.session, st.sessionID, st.csrf = true, id, sess.csrf
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authKey{}, st)))
	})
}

// tooManyAttempts answers 429 with the seconds to wait.
func tooManyAttempts(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	http.Error(w, fmt.Sprintf("too many wrong tokens: try again in %s", wait.Round(time.Second)), http.StatusTooManyRequests)
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

// authorizeRead lets a read through with the token or a session, or to
// anyone when serve was started with --public-reads.
func (d *dashboard) authorizeRead(w http.ResponseWriter, r *http.Request) bool {
	st := d.authOf(r)
	if (d.publicReads && !st.badToken) || st.authenticated() {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="kato-manager"`)
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		d.renderStatus(w, r, http.StatusUnauthorized, "login", d.base(r, "Log in"))
		return false
	}
	http.Error(w, "reads need the token (Authorization: Bearer) or a session", http.StatusUnauthorized)
	return false
}

// hostPolicy is which names a request's Host header may give: the listen
// address's own, localhost's for a loopback address, and the operator's
// (--allow-host). A page of another name that resolves to serve's address
// (DNS rebinding) is refused. An IP address cannot be rebound: with a
// wildcard listen address (0.0.0.0, ::) any IP address is one of serve's.
type hostPolicy struct {
	names    map[string]bool
	loopback bool // localhost and loopback addresses
	anyIP    bool
}

// hostName is the Host header's name without port, brackets, trailing dot
// or case.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// validHostName is a DNS name: labels of letters, digits and hyphens.
var validHostName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

func newHostPolicy(listen string, allow []string) (*hostPolicy, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, &config.FieldError{Field: "listen", Value: listen, Rule: "must be HOST:PORT"}
	}
	p := &hostPolicy{names: map[string]bool{}}
	ip := net.ParseIP(host)
	switch {
	case host == "" || ip != nil && ip.IsUnspecified():
		p.anyIP = true
	case IsLoopback(listen):
		p.loopback = true
	}
	p.names[hostName(host)] = host != ""
	for _, a := range allow {
		name := hostName(a)
		if name == "" || net.ParseIP(name) == nil && !validHostName.MatchString(name) || strings.ContainsAny(a, "/ ") {
			return nil, &config.FieldError{Field: "allow-host", Value: a, Rule: "must be a host name or an IP address, without scheme, port or path"}
		}
		p.names[name] = true
	}
	return p, nil
}

func (p *hostPolicy) allows(header string) bool {
	name := hostName(header)
	if name == "" {
		return false
	}
	if p.names[name] {
		return true
	}
	ip := net.ParseIP(name)
	if ip != nil && p.names[ip.String()] {
		return true
	}
	if p.loopback && (name == "localhost" || strings.HasSuffix(name, ".localhost") || ip != nil && ip.IsLoopback()) {
		return true
	}
	return p.anyIP && ip != nil
}

// refusal says why a Host header is refused and what to do.
func (p *hostPolicy) refusal(header string) string {
	var names []string
	for n, ok := range p.names {
		if ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if p.loopback {
		names = append(names, "localhost", "loopback addresses")
	}
	if p.anyIP {
		names = append(names, "any IP address")
	}
	return fmt.Sprintf("invalid Host %q: is not a name of this server (it answers to %s); start serve with --allow-host NAME to add one",
		header, strings.Join(names, ", "))
}

// loginLimits bound the guesses of the token, from one client address (an
// IPv6 client by its /64) and from all together. Only wrong tokens use the
// allowance; over it, every attempt is refused before its token is
// compared, so that a guess there tells nothing.
type loginLimits struct {
	mu        sync.Mutex
	global    *rate.Limiter
	perClient map[string]*rate.Limiter
	every     time.Duration // a client gets one more attempt after this
	burst     int           // attempts a client may make at once
	now       func() time.Time
}

// newLoginLimits allows a client 20 wrong tokens at once and one more
// every 3 s, and all clients together 200 at once and two a second.
func newLoginLimits() *loginLimits {
	return &loginLimits{global: rate.NewLimiter(2, 200), perClient: map[string]*rate.Limiter{}, every: 3 * time.Second, burst: 20, now: time.Now}
}

// clientKey is the address the limit of a client counts by.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// attempt compares a token (check) as an attempt of the client at
// remoteAddr. Over the client's or the global limit it does not compare
// and returns how long to wait; a wrong token uses one attempt of both.
func (l *loginLimits) attempt(remoteAddr string, check func() bool) (ok bool, wait time.Duration) {
	key := clientKey(remoteAddr)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	lim, found := l.perClient[key]
	if !found {
		if len(l.perClient) >= 4096 {
			// Clients whose allowance is whole again are forgotten.
			for k, c := range l.perClient {
				if c.TokensAt(now) >= float64(l.burst) {
					delete(l.perClient, k)
				}
			}
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.perClient[key] = lim
	}
	for _, r := range []*rate.Limiter{lim, l.global} {
		if t := r.TokensAt(now); t < 1 {
			wait = max(wait, time.Duration((1-t)/float64(r.Limit())*float64(time.Second)))
		}
	}
	if wait > 0 {
		return false, wait
	}
	if ok = check(); !ok {
		lim.AllowN(now, 1)
		l.global.AllowN(now, 1)
	}
	return ok, 0
}

// Certificate is the certificate serve answers TLS with: from
// --tls-cert and --tls-key, or else from the systemd credentials tls-cert
// and tls-key (LoadCredential=, found in $CREDENTIALS_DIRECTORY). None
// means plain HTTP. source says where it came from.
func Certificate(certFile, keyFile string) (cert *tls.Certificate, source string, err error) {
	switch {
	case certFile != "" && keyFile == "":
		return nil, "", &config.FieldError{Field: "tls-key", Value: "", Rule: "must be given with --tls-cert " + certFile}
	case keyFile != "" && certFile == "":
		return nil, "", &config.FieldError{Field: "tls-cert", Value: "", Rule: "must be given with --tls-key " + keyFile}
	case certFile == "":
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, "", nil
		}
		certFile, keyFile = filepath.Join(dir, "tls-cert"), filepath.Join(dir, "tls-key")
		_, errCert := os.Stat(certFile)
		_, errKey := os.Stat(keyFile)
		if errors.Is(errCert, fs.ErrNotExist) && errors.Is(errKey, fs.ErrNotExist) {
			return nil, "", nil
		}
		source = "the credentials tls-cert and tls-key"
	default:
		source = certFile
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return &c, source, nil
}
