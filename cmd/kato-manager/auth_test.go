package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	good := write("good", "0123456789abcdef0123\n", 0o600)
	if tok, err := readTokenFile(good, true); err != nil || tok != "0123456789abcdef0123" {
		t.Errorf("good file: %q %v", tok, err)
	}
	for _, c := range []struct{ path, want string }{
		{write("open", "0123456789abcdef0123", 0o644), "mode 0644, readable or writable by others"},
		{write("group", "0123456789abcdef0123", 0o640), "mode 0640"},
		{write("short", "abc", 0o600), "at least 16"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		if _, err := readTokenFile(c.path, true); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.path, err, c.want)
		}
	}
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	if _, err := readTokenFile(link, true); err == nil {
		t.Error("a symbolic link was followed")
	}
	if tok, err := readTokenFile(filepath.Join(dir, "missing"), false); err != nil || tok != "" {
		t.Errorf("missing default file: %q %v, want no token", tok, err)
	}
	if os.Geteuid() == 0 {
		os.Chown(good, 65534, 65534)
		if _, err := readTokenFile(good, true); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("another user's file: %v", err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9090": true, "[::1]:9090": true, "localhost:1": true, "127.9.9.9:80": true,
		":9090": false, "0.0.0.0:9090": false, "192.168.1.5:9090": false, "[::]:80": false, "example.com:80": false} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v", addr, got)
		}
	}
}

// TestActionsRefusedWithoutToken: an action answers 401 without
// credentials or with a wrong token, 403 without the session's CSRF token
// or when serve has no token at all, and gets through with the bearer
// token or a logged-in session's form.
func TestActionsRefusedWithoutToken(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	d, err := newDashboard(nil, nil, nil, nil, token, true)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.routes(mux)
	// An action that reaches its handler is answered 404 here: "nothing"
	// is not an action; refusals come before.
	srv := httptest.NewServer(mux)
	defer srv.Close()
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

	none, err := newDashboard(nil, nil, nil, nil, "", true)
	if err != nil {
		t.Fatal(err)
	}
	mux2 := http.NewServeMux()
	none.routes(mux2)
	srv2 := httptest.NewServer(mux2)
	defer srv2.Close()
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

func TestServeNeedsTokenOffLoopback(t *testing.T) {
	code, _, stderr := runCLI(t, "", "serve", "--listen", "0.0.0.0:9999", "--token-file", filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing explicit token file: exit %d %q", code, stderr)
	}
	old := defaultTokenFile
	defaultTokenFile = filepath.Join(t.TempDir(), "serve.token")
	defer func() { defaultTokenFile = old }()
	for _, listen := range []string{"0.0.0.0:9999", ":9999", "192.0.2.1:9999"} {
		code, _, stderr = runCLI(t, "", "serve", "--listen", listen)
		if code != 2 || !strings.Contains(stderr, "invalid --listen "+listen+": is not a loopback address: it needs a token file") {
			t.Errorf("serve --listen %s without a token: exit %d %q", listen, code, stderr)
		}
	}
	for _, d := range []string{"0s", "500ms", "11m0s"} {
		code, _, stderr = runCLI(t, "", "serve", "--sample-interval", d)
		if code != 2 || !strings.Contains(stderr, "invalid --sample-interval "+d+": must be between 1s and 10m") {
			t.Errorf("serve --sample-interval %s: exit %d %q", d, code, stderr)
		}
	}
	open := filepath.Join(t.TempDir(), "open.token")
	os.WriteFile(open, []byte("0123456789abcdef0123"), 0o644)
	os.Chmod(open, 0o644)
	code, _, stderr = runCLI(t, "", "serve", "--token-file", open)
	if code != 1 || !strings.Contains(stderr, "readable or writable by others") {
		t.Errorf("serve with a token file others can read: exit %d %q", code, stderr)
	}
}

// TestReadsNeedTheTokenOffLoopback: on an address other than loopback a
// page without credentials answers 401 with the login form, under the
// dashboard's security headers.
func TestReadsNeedTheTokenOffLoopback(t *testing.T) {
	d, err := newDashboard(nil, nil, nil, nil, "0123456789abcdef0123456789abcdef", false)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, path := range []string{"/", "/documents", "/instances/a", "/documents/1"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := new(strings.Builder)
		io.Copy(body, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body.String(), `name="token"`) ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: %d %v\n%s", path, resp.StatusCode, resp.Header, body)
		}
	}
}
