package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/web"
)

func TestServeNeedsTokenOffLoopback(t *testing.T) {
	code, _, stderr := runCLI(t, "", "serve", "--listen", "0.0.0.0:9999", "--token-file", filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing explicit token file: exit %d %q", code, stderr)
	}
	old := web.DefaultTokenFile
	web.DefaultTokenFile = filepath.Join(t.TempDir(), "serve.token")
	defer func() { web.DefaultTokenFile = old }()
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
	for _, tc := range []struct{ flag, value, rule string }{
		{"--snapshot-age", "-1s", "must be between 0s and 1m"},
		{"--snapshot-age", "2m0s", "must be between 0s and 1m"},
		{"--max-requests", "0", "must be between 1 and 100000"},
	} {
		code, _, stderr = runCLI(t, "", "serve", tc.flag, tc.value)
		if code != 2 || !strings.Contains(stderr, "invalid "+tc.flag+" "+tc.value+": "+tc.rule) {
			t.Errorf("serve %s %s: exit %d %q", tc.flag, tc.value, code, stderr)
		}
	}
	open := filepath.Join(t.TempDir(), "open.token")
	os.WriteFile(open, []byte("0123456789abcdef0123456789abcdef"), 0o644)
	os.Chmod(open, 0o644)
	code, _, stderr = runCLI(t, "", "serve", "--token-file", open)
	if code != 1 || !strings.Contains(stderr, "readable or writable by others") {
		t.Errorf("serve with a token file others can read: exit %d %q", code, stderr)
	}
}

// TestServeNeedsTokenOrPublicReads: without a token file serve does not
// start unless --public-reads says reads are for everyone; bad flags of
// the Host check and of TLS are refused before systemd is asked anything.
func TestServeNeedsTokenOrPublicReads(t *testing.T) {
	old := web.DefaultTokenFile
	web.DefaultTokenFile = filepath.Join(t.TempDir(), "serve.token")
	defer func() { web.DefaultTokenFile = old }()
	code, _, stderr := runCLI(t, "", "serve")
	if code != 1 || !strings.Contains(stderr, "serve has no token file "+web.DefaultTokenFile+": reads and actions need its token") ||
		!strings.Contains(stderr, "--public-reads") {
		t.Errorf("serve without a token: exit %d %q", code, stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a URL as host", []string{"--allow-host", "http://dash.example"}, "invalid --allow-host http://dash.example: must be a host name or an IP address, without scheme, port or path"},
		{"a path", []string{"--allow-host", "dash.example/x"}, "invalid --allow-host dash.example/x"},
		{"a name with an underscore", []string{"--allow-host", "bad_name.example"}, "invalid --allow-host bad_name.example"},
		{"a key without its certificate", []string{"--tls-key", "/k.pem"}, `invalid --tls-cert "": must be given with --tls-key /k.pem`},
		{"a certificate without its key", []string{"--tls-cert", "/c.pem"}, `invalid --tls-key "": must be given with --tls-cert /c.pem`},
	} {
		code, _, stderr := runCLI(t, "", append([]string{"serve", "--public-reads"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d %q, want 2 and %q", tc.name, code, stderr, tc.want)
		}
	}
}

// TestServeRefusesPlainHTTPOffLoopback: an address other than loopback is
// served over TLS only: without a certificate serve does not start.
func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "serve.token")
	os.WriteFile(tokenFile, []byte("0123456789abcdef0123456789abcdef"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	for _, listen := range []string{"0.0.0.0:9999", "192.0.2.1:9999", "[::]:9999"} {
		code, _, stderr := runCLI(t, "", "serve", "--listen", listen, "--token-file", tokenFile)
		if code != exitUsage || !strings.Contains(stderr, "invalid --listen "+listen+": is not a loopback address: plain HTTP is refused there; give --tls-cert and --tls-key") {
			t.Errorf("serve --listen %s without TLS: exit %d %q", listen, code, stderr)
		}
	}
}

// TestOverviewIsOneRequestToTheChild: what a page or a scrape reads of the
// queue (counts, the workers' reports, latencies, the items listed) is one
// request to root's database child, through serve's reopening queue.
func TestOverviewIsOneRequestToTheChild(t *testing.T) {
	_, kgDir := queueDirFor(t)
	ctx := context.Background()
	dbPath := filepath.Join(kgDir, "kg.db")
	open := func() (queueDB, error) {
		return startQueueChild(ctx, queueRequest{Op: "open", DB: dbPath, MaxRetries: 3})
	}
	storeDocuments(t, dbPath, 7, 8)
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	q := newReopeningQueue(first, open)
	defer q.Close()
	if _, err := q.EnqueueDocuments(ctx, 1, 7, 8); err != nil {
		t.Fatal(err)
	}
	child := first.(*queueChild)
	w := &countingWriter{WriteCloser: child.in}
	child.in = w
	o, err := q.Overview(ctx, kgworker.StatusPending, 50)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.writes.Load(); got != 1 {
		t.Errorf("the overview took %d requests to the child, want 1", got)
	}
	if o.Counts.Pending != 2 || len(o.Items) != 2 || o.Items[0].Status != kgworker.StatusPending {
		t.Errorf("overview: counts %+v, items %+v; want the 2 pending items", o.Counts, o.Items)
	}
}

// countingWriter counts the requests written to a child.
type countingWriter struct {
	io.WriteCloser
	writes atomic.Int32
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.WriteCloser.Write(p)
}
