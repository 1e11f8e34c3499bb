package web

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/supervisor"
)

// serverOptions are the options of a server on loopback with the token
// and a real queue database.
func serverOptions(t *testing.T) Options {
	t.Helper()
	q, err := kgworker.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return Options{Manager: &supervisor.Manager{Config: config.Default()}, Queue: kgdb.NewLocal(q), ActionQueue: kgdb.NewLocal(q), Token: actionToken,
		Listen: "127.0.0.1:0", SampleInterval: time.Second, MaxRequests: 8}
}

// TestServerWithoutTheCLI: a test starts the server the serve command
// runs on a listener of its own: reads and actions need the token, the
// queue answers through the options' Queue and ActionQueue, a Host not the
// server's is refused, and the server stops when its context ends.
func TestServerWithoutTheCLI(t *testing.T) {
	o := serverOptions(t)
	if _, err := o.Queue.(*kgdb.Local).Queue.Enqueue(context.Background(), 7, 1); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	do := func(method, path, host string, withToken bool) (int, string) {
		t.Helper()
		path, form, _ := strings.Cut(path, "?")
		req, _ := http.NewRequest(method, base+path, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if host != "" {
			req.Host = host
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+actionToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := do("GET", "/documents", "", false); code != http.StatusUnauthorized {
		t.Errorf("GET /documents without the token: %d, want 401", code)
	}
	if code, body := do("GET", "/documents", "", true); code != http.StatusOK || !strings.Contains(body, "<html") {
		t.Errorf("GET /documents with the token: %d\n%s", code, body)
	}
	if code, body := do("POST", "/actions/delete?item=1&confirm=yes", "", true); code != http.StatusOK || body != "1 item(s) deleted\n" {
		t.Errorf("POST /actions/delete: %d %q", code, body)
	}
	if c, _ := o.Queue.Stats(context.Background()); c.Total != 0 {
		t.Errorf("after the delete the queue holds %+v", c)
	}
	if code, _ := do("GET", "/documents", "rebound.example", true); code != http.StatusMisdirectedRequest {
		t.Errorf("GET with Host rebound.example: %d, want 421", code)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10s after its context ended")
	}
	if _, err := http.Get(base + "/documents"); err == nil {
		t.Error("the server still answers after Serve returned")
	}
}

// TestServerOptionsChecked: the options are refused, naming serve's flag,
// the value and the rule, before anything is served.
func TestServerOptionsChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"listen without a port", func(o *Options) { o.Listen = "localhost" }, "invalid --listen localhost: must be HOST:PORT"},
		{"a URL as another name", func(o *Options) { o.AllowHosts = []string{"http://dash.example"} }, "invalid allow-host http://dash.example"},
		{"sampling too often", func(o *Options) { o.SampleInterval = 500 * time.Millisecond }, "invalid sample_interval 500ms: must be between 1s and 10m"},
		{"no sampling interval", func(o *Options) { o.SampleInterval = 0 }, "invalid sample_interval 0s: must be between 1s and 10m"},
		{"a snapshot kept too long", func(o *Options) { o.SnapshotAge = 2 * time.Minute }, "invalid --snapshot-age 2m0s: must be between 0s and 1m"},
		{"no request answered", func(o *Options) { o.MaxRequests = 0 }, "invalid --max-requests 0: must be between 1 and 100000"},
		{"off loopback without the token", func(o *Options) { o.Listen, o.Token = "0.0.0.0:9443", "" }, "invalid listen 0.0.0.0:9443: is not a loopback address: it needs a token file"},
		{"off loopback without TLS", func(o *Options) { o.Listen = "192.0.2.1:9443" }, "invalid listen 192.0.2.1:9443: is not a loopback address: plain HTTP is refused there"},
		{"no token and reads not public", func(o *Options) { o.Token, o.TokenFile = "", "/etc/kato/serve.token" }, "serve has no token file /etc/kato/serve.token: reads and actions need its token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := serverOptions(t)
			tc.edit(&o)
			if _, err := NewServer(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewServer: %v, want %q", err, tc.want)
			}
		})
	}
}
