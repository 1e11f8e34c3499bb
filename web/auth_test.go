package web

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestReadTokenFileRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const token = "0123456789abcdef0123456789abcdef" // 128 bits as hex
	good := write("good", token+"\n", 0o600)
	if tok, err := ReadTokenFile(good, true); err != nil || tok != token {
		t.Errorf("good file: %q %v", tok, err)
	}
	if tok, err := ReadTokenFile(write("base64", "q83vEjRWeJq83vEjRWeJq83vEjRWeJq8+/_-~.=", 0o600), true); err != nil || tok == "" {
		t.Errorf("a base64 token: %q %v", tok, err)
	}
	short := write("short", token[:31], 0o600)
	for _, c := range []struct{ name, path, want string }{
		{"others may read", write("open", token, 0o644), "mode 0644, readable or writable by others"},
		{"group may read", write("group", token, 0o640), "mode 0640"},
		{"120 bits", short, "invalid token in " + short + ": a token of 31 characters: must be at least 32 characters (128 bits of a random hex token"},
		{"three characters", write("tiny", "abc", 0o600), "a token of 3 characters: must be at least 32"},
		{"a space inside", write("space", "0123456789abcdef 0123456789abcdef", 0o600), "a token of 33 characters whose character 17 is none of A-Z a-z 0-9 - . _ ~ + / ="},
		{"missing", filepath.Join(dir, "missing"), "no such file"},
	} {
		_, err := ReadTokenFile(c.path, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), token[:16]) {
			t.Errorf("%s: the error shows the token: %v", c.name, err)
		}
	}
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	if _, err := ReadTokenFile(link, true); err == nil {
		t.Error("a symbolic link was followed")
	}
	if tok, err := ReadTokenFile(filepath.Join(dir, "missing"), false); err != nil || tok != "" {
		t.Errorf("missing default file: %q %v, want no token", tok, err)
	}
	if os.Geteuid() == 0 {
		os.Chown(good, 65534, 65534)
		if _, err := ReadTokenFile(good, true); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("another user's file: %v", err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9090": true, "[::1]:9090": true, "localhost:1": true, "127.9.9.9:80": true,
		":9090": false, "0.0.0.0:9090": false, "192.168.1.5:9090": false, "[::]:80": false, "example.com:80": false} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

// TestActionsRefusedWithoutToken: an action answers 401 without
// credentials or with a wrong token, 403 without the session's CSRF token
// or when serve has no token at all, and gets through with the bearer
// token or a logged-in session's form.
func TestActionsRefusedWithoutToken(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	// An action that reaches its handler is answered 404 here: "nothing"
	// is not an action; refusals come before.
	d, srv := testDashboard(t, dashboardOptions{token: token, publicReads: true})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values, header map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusSeeOther {
			for _, c := range resp.Cookies() {
				if c.Name == sessionCookie {
					header["Cookie"] = c.Name + "=" + c.Value
				}
			}
		}
		return resp.StatusCode
	}
	if code := post("/actions/nothing", nil, map[string]string{}); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d", code)
	}
	if code := post("/actions/nothing", nil, map[string]string{"Authorization": "Bearer wrong"}); code != http.StatusUnauthorized {
		t.Errorf("wrong bearer: %d", code)
	}
	if code := post("/actions/nothing", nil, map[string]string{"Authorization": "Bearer " + token}); code != http.StatusNotFound {
		t.Errorf("right bearer: %d, want the handler's 404", code)
	}
	if code := post("/login", url.Values{"token": {"wrong"}}, map[string]string{}); code != http.StatusUnauthorized {
		t.Errorf("login with a wrong token: %d", code)
	}
	session := map[string]string{}
	if code := post("/login", url.Values{"token": {token}}, session); code != http.StatusSeeOther || session["Cookie"] == "" {
		t.Fatalf("login: %d %v", code, session)
	}
	if code := post("/actions/nothing", nil, session); code != http.StatusForbidden {
		t.Errorf("session without CSRF token: %d", code)
	}
	if code := post("/actions/nothing", url.Values{"csrf": {"forged"}}, session); code != http.StatusForbidden {
		t.Errorf("session with a forged CSRF token: %d", code)
	}
	_, sess, _ := d.sessions.lookup(&http.Request{Header: http.Header{"Cookie": {session["Cookie"]}}})
	if code := post("/actions/nothing", url.Values{"csrf": {sess.csrf}}, session); code != http.StatusNotFound {
		t.Errorf("session with its CSRF token: %d, want the handler's 404", code)
	}
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		req, _ := http.NewRequest(m, srv.URL+"/actions/stop", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /actions/stop: %d, want 405", m, resp.StatusCode)
		}
	}

	_, srv2 := testDashboard(t, dashboardOptions{publicReads: true})
	req, _ := http.NewRequest("POST", srv2.URL+"/actions/stop", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no token configured: %d, want 403", resp.StatusCode)
	}
}

// testDashboard serves a dashboard without systemd or queue behind its
// guard, as serve does, on a loopback address.
func testDashboard(t *testing.T, o dashboardOptions) (*dashboard, *httptest.Server) {
	t.Helper()
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	d, err := newDashboard(nil, nil, nil, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.routes(mux)
	srv := httptest.NewServer(d.guard(mux))
	t.Cleanup(srv.Close)
	return d, srv
}

// get sends a GET with the headers and returns the status, the headers
// and the body.
func get(t *testing.T, client *http.Client, url string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// TestReadsNeedTheToken: on loopback too, every page (the fleet, an
// instance with its journal, the documents, a document) answers 401
// without credentials, the login form to a browser, under the dashboard's
// security headers; with the bearer token or after a login it is read;
// --public-reads opens reads, not actions.
func TestReadsNeedTheToken(t *testing.T) {
	srv, _, _, _ := actionServer(t)
	paths := []string{"/", "/documents", "/instances/a", "/documents/1"}
	for _, path := range paths {
		code, h, body := get(t, http.DefaultClient, srv.URL+path, map[string]string{"Accept": "text/html"})
		if code != http.StatusUnauthorized || !strings.Contains(body, `name="token"`) || strings.Contains(body, "<table") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s without the token: %d %v\n%s", path, code, h, body)
		}
		if code, _, body := get(t, http.DefaultClient, srv.URL+path, nil); code != http.StatusUnauthorized || !strings.Contains(body, "reads need the token") {
			t.Errorf("GET %s by a script without the token: %d %q", path, code, body)
		}
		if code, _, _ := get(t, http.DefaultClient, srv.URL+path, map[string]string{"Authorization": "Bearer " + actionToken[:31] + "x"}); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", path, code)
		}
	}
	if code, _, body := get(t, http.DefaultClient, srv.URL+"/documents", map[string]string{"Authorization": "Bearer " + actionToken}); code != http.StatusOK || !strings.Contains(body, `id="documents"`) {
		t.Errorf("GET /documents with the token: %d\n%s", code, body)
	}
	// The static files are the page's own and hold nothing of the fleet.
	if code, _, _ := get(t, http.DefaultClient, srv.URL+"/static/style.css", nil); code != http.StatusOK {
		t.Errorf("GET /static/style.css: %d", code)
	}

	_, pub := testDashboard(t, dashboardOptions{token: actionToken, publicReads: true})
	// The handler answers: the id is not a document's.
	if code, _, body := get(t, http.DefaultClient, pub.URL+"/documents/x", nil); code != http.StatusBadRequest {
		t.Errorf("GET /documents/x with --public-reads: %d %q, want the handler's 400", code, body)
	}
	if code, _ := postAction(t, pub, "stop", url.Values{"id": {"a"}, "confirm": {"yes"}}, false); code != http.StatusUnauthorized {
		t.Errorf("stop with --public-reads and no token: %d, want 401", code)
	}
}

// TestHostHeaderChecked: a Host header must name the server: its listen
// address, localhost's names on loopback, an IP address on a wildcard
// address, or an --allow-host name; any other name (a rebound DNS name)
// is refused with 421 before anything is read, the token notwithstanding.
func TestHostHeaderChecked(t *testing.T) {
	for _, tc := range []struct {
		listen string
		allow  []string
		ok     []string
		refuse []string
	}{
		{"127.0.0.1:9090", []string{"dash.example", "192.0.2.9"}, []string{"127.0.0.1:9090", "127.0.0.1", "localhost:9090", "LOCALHOST", "localhost.:9090", "app.localhost", "[::1]:9090", "127.0.0.2",
			"dash.example", "Dash.Example.:443", "192.0.2.9:9090"},
			[]string{"", "evil.example:9090", "localhost.evil.example", "127.0.0.1.evil.example", "192.0.2.1", "dash.example.evil"}},
		{"localhost:9090", nil, []string{"localhost:9090", "127.0.0.1:9090", "[::1]"}, []string{"evil.example"}},
		{"0.0.0.0:9090", []string{"dash.example"}, []string{"192.0.2.7:9090", "[2001:db8::1]:9090", "dash.example"}, []string{"evil.example", "localhost"}},
		{":9090", nil, []string{"192.0.2.7"}, []string{"evil.example"}},
		{"192.0.2.1:9090", nil, []string{"192.0.2.1:9090", "192.0.2.1"}, []string{"192.0.2.2", "127.0.0.1", "localhost", "evil.example"}},
		{"[2001:db8::1]:9090", nil, []string{"[2001:db8::1]:9090", "[2001:DB8:0::1]"}, []string{"[2001:db8::2]", "evil.example"}},
		{"dash.example:9090", nil, []string{"dash.example:9090"}, []string{"evil.example", "localhost"}},
	} {
		p, err := newHostPolicy(tc.listen, tc.allow)
		if err != nil {
			t.Fatalf("%s: %v", tc.listen, err)
		}
		for _, h := range tc.ok {
			if !p.allows(h) {
				t.Errorf("listen %s, --allow-host %v: Host %q refused", tc.listen, tc.allow, h)
			}
		}
		for _, h := range tc.refuse {
			if p.allows(h) {
				t.Errorf("listen %s, --allow-host %v: Host %q allowed", tc.listen, tc.allow, h)
			}
		}
	}

	_, srv := testDashboard(t, dashboardOptions{token: actionToken, allowHosts: []string{"dash.example"}})
	bearer := "Bearer " + actionToken
	code, _, body := get(t, http.DefaultClient, srv.URL+"/instances/a", map[string]string{"Host": "evil.example:9090", "Authorization": bearer})
	if code != http.StatusMisdirectedRequest || !strings.Contains(body, `invalid Host "evil.example:9090": is not a name of this server (it answers to 127.0.0.1, dash.example, localhost, loopback addresses); start serve with --allow-host NAME`) {
		t.Errorf("a rebound name: %d %q", code, body)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader("token="+actionToken))
	req.Host = "evil.example"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest || len(resp.Cookies()) != 0 {
		t.Errorf("a login through a rebound name: %d %v", resp.StatusCode, resp.Cookies())
	}
	// The guard is in front of the static files too; a name allowed passes.
	if code, _, _ := get(t, http.DefaultClient, srv.URL+"/static/style.css", map[string]string{"Host": "evil.example"}); code != http.StatusMisdirectedRequest {
		t.Errorf("static file through a rebound name: %d", code)
	}
	if code, _, _ := get(t, http.DefaultClient, srv.URL+"/static/style.css", map[string]string{"Host": "dash.example:8443"}); code != http.StatusOK {
		t.Errorf("static file through --allow-host's name: %d", code)
	}
}

// TestLoginAttemptsAreLimited: wrong tokens, at the login form or in a
// bearer header, use the client's allowance; over it every attempt, the
// right token's too, is answered 429 with Retry-After before the token is
// compared; a right token uses none of it.
func TestLoginAttemptsAreLimited(t *testing.T) {
	d, srv := testDashboard(t, dashboardOptions{token: actionToken})
	now := time.Unix(1e9, 0)
	d.limits = newLoginLimits()
	d.limits.burst, d.limits.every, d.limits.now = 3, time.Minute, func() time.Time { return now }
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func(token string) (int, http.Header) {
		t.Helper()
		resp, err := client.PostForm(srv.URL+"/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for i := range 5 {
		if code, _ := login(actionToken); code != http.StatusSeeOther {
			t.Fatalf("right login %d: %d", i, code)
		}
	}
	for i := range 2 {
		if code, _ := login("wrong"); code != http.StatusUnauthorized {
			t.Fatalf("wrong login %d: %d", i, code)
		}
	}
	if code, _, _ := get(t, client, srv.URL+"/", map[string]string{"Authorization": "Bearer wrong"}); code != http.StatusUnauthorized {
		t.Fatalf("third wrong token, in a bearer header: %d", code)
	}
	for _, tok := range []string{"wrong", actionToken} {
		code, h := login(tok)
		if code != http.StatusTooManyRequests || h.Get("Retry-After") != "60" {
			t.Errorf("login over the limit: %d, Retry-After %q, want 429 and 60", code, h.Get("Retry-After"))
		}
	}
	if code, h, body := get(t, client, srv.URL+"/", map[string]string{"Authorization": "Bearer " + actionToken}); code != http.StatusTooManyRequests || h.Get("Retry-After") != "60" ||
		!strings.Contains(body, "too many wrong tokens: try again in 1m0s") {
		t.Errorf("bearer over the limit: %d %v %q", code, h, body)
	}
	now = now.Add(time.Minute)
	if code, _ := login(actionToken); code != http.StatusSeeOther {
		t.Errorf("right login a minute later: %d", code)
	}
}

// TestLoginLimitsPerClientAndGlobal: one client's wrong tokens do not
// lock out another; all clients together have a limit of their own; an
// IPv6 client counts by its /64.
func TestLoginLimitsPerClientAndGlobal(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newLoginLimits()
	l.burst, l.every, l.now = 2, 10*time.Second, func() time.Time { return now }
	l.global = rate.NewLimiter(rate.Every(time.Minute), 5)
	wrong := func() bool { return false }
	try := func(addr string) time.Duration {
		t.Helper()
		_, wait := l.attempt(addr, wrong)
		return wait
	}
	for range 2 {
		if w := try("192.0.2.1:4000"); w != 0 {
			t.Fatalf("first attempts of a: wait %s", w)
		}
	}
	if w := try("192.0.2.1:4001"); w != 10*time.Second {
		t.Errorf("a over its limit: wait %s, want 10s", w)
	}
	if w := try("[2001:db8::1]:1"); w != 0 {
		t.Errorf("b locked out by a: wait %s", w)
	}
	try("[2001:db8::ffff]:2")
	if w := try("[2001:db8::2]:3"); w != 10*time.Second {
		t.Errorf("a third address of b's /64: wait %s, want 10s", w)
	}
	if w := try("[2001:db8:0:1::1]:3"); w != 0 {
		t.Errorf("another /64: wait %s", w)
	}
	// Five wrong tokens in all: the global limit refuses a new client.
	if w := try("198.51.100.1:1"); w != time.Minute {
		t.Errorf("a new client over the global limit: wait %s, want 1m", w)
	}
	if ok, _ := l.attempt("198.51.100.1:1", func() bool { t.Error("a token compared over the limit"); return true }); ok {
		t.Error("a right token let through over the limit")
	}
}

// TestServeCertificate: --tls-cert and --tls-key go together; without
// them the systemd credentials tls-cert and tls-key are used when there;
// a certificate that does not load names both files.
func TestServeCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCertificate(t, dir, "dash.example")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if c, _, err := Certificate("", ""); c != nil || err != nil {
		t.Errorf("no flags, no credentials: %v %v", c, err)
	}
	c, source, err := Certificate(certFile, keyFile)
	if err != nil || c == nil || source != certFile {
		t.Fatalf("flags: %v %q %v", c, source, err)
	}
	if _, _, err := Certificate(certFile, certFile); err == nil || !strings.Contains(err.Error(), "TLS certificate "+certFile+" with key "+certFile) {
		t.Errorf("a certificate as its own key: %v", err)
	}
	creds := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if c, _, err := Certificate("", ""); c != nil || err != nil {
		t.Errorf("credentials directory without TLS credentials: %v %v", c, err)
	}
	os.Link(certFile, filepath.Join(creds, "tls-cert"))
	if _, _, err := Certificate("", ""); err == nil || !strings.Contains(err.Error(), filepath.Join(creds, "tls-key")) {
		t.Errorf("credential tls-cert without tls-key: %v", err)
	}
	os.Link(keyFile, filepath.Join(creds, "tls-key"))
	if c, source, err := Certificate("", ""); err != nil || c == nil || source != "the credentials tls-cert and tls-key" {
		t.Errorf("credentials: %v %q %v", c, source, err)
	}
}

// TestSessionCookieSecureUnderTLS: served over TLS, the session cookie is
// Secure (and HttpOnly, SameSite=Strict); the dashboard answers through
// the certificate serve loads.
func TestSessionCookieSecureUnderTLS(t *testing.T) {
	certFile, keyFile := writeTestCertificate(t, t.TempDir(), "127.0.0.1")
	cert, _, err := Certificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, useTLS := range []bool{true, false} {
		d, err := newDashboard(nil, nil, nil, nil, dashboardOptions{token: actionToken, listen: "127.0.0.1:0", tls: useTLS})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		d.routes(mux)
		srv := httptest.NewUnstartedServer(d.guard(mux))
		client := http.DefaultClient
		if useTLS {
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
			srv.StartTLS()
			pool := x509.NewCertPool()
			pool.AddCert(cert.Leaf)
			client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		} else {
			srv.Start()
		}
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := client.PostForm(srv.URL+"/login", url.Values{"token": {actionToken}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		cookies := resp.Cookies()
		if len(cookies) != 1 || cookies[0].Secure != useTLS || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
			t.Errorf("TLS %v: cookies %+v", useTLS, cookies)
		}
	}
}

// writeTestCertificate writes a self-signed certificate for host and its
// key, as PEM, into dir.
func writeTestCertificate(t *testing.T, dir, host string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
