package front

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the current output")

func validGroup() Group {
	return Group{
		Name: "ab", Port: 8080, Balance: RoundRobin,
		Ready: ReadyCheck{Path: "/health", Body: HealthyBody},
		Members: []Member{
			{ID: "ab-1", Address: "127.0.0.1", Port: 9001, Weight: 90},
			{ID: "ab-2", Address: "localhost", Port: 9002, Weight: 10},
		},
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Group)
		field string
		value string
	}{
		{"group name with a space", func(g *Group) { g.Name = "a b" }, "group name", "a b"},
		{"front port 0", func(g *Group) { g.Port = 0 }, "groups.ab.front", "0"},
		{"front port too high", func(g *Group) { g.Port = 70000 }, "groups.ab.front", "70000"},
		{"address not an IP", func(g *Group) { g.Address = "localhost" }, "groups.ab.address", "localhost"},
		{"unknown balance", func(g *Group) { g.Balance = "random" }, "groups.ab.balance", "random"},
		{"hash without header", func(g *Group) { g.Balance = "hash:" }, "groups.ab.balance", "hash:"},
		{"hash header with a space", func(g *Group) { g.Balance = "hash:X Session" }, "groups.ab.balance", "hash:X Session"},
		{"hash header with a quote", func(g *Group) { g.Balance = "hash:X'y" }, "groups.ab.balance", "hash:X'y"},
		{"hash header with a comment", func(g *Group) { g.Balance = "hash:X#y" }, "groups.ab.balance", "hash:X#y"},
		{"hash header with a variable", func(g *Group) { g.Balance = "hash:X$HOME" }, "groups.ab.balance", "hash:X$HOME"},
		{"ready path relative", func(g *Group) { g.Ready.Path = "health" }, "groups.ab.ready", "health"},
		{"ready path with a space", func(g *Group) { g.Ready.Path = "/health x" }, "groups.ab.ready", "/health x"},
		{"ready path with a quote", func(g *Group) { g.Ready.Path = "/health'" }, "groups.ab.ready", "/health'"},
		{"ready path {id} without path balance", func(g *Group) { g.Ready.Path = "/{id}/ping" }, "groups.ab.ready", "/{id}/ping"},
		{"ready status", func(g *Group) { g.Ready.Status = 700 }, "groups.ab.ready_status", "700"},
		{"ready body not a regexp", func(g *Group) { g.Ready.Body = "(" }, "groups.ab.ready_body", "("},
		{"ready body with a quote", func(g *Group) { g.Ready.Body = "it's" }, "groups.ab.ready_body", "it's"},
		{"ready body on two lines", func(g *Group) { g.Ready.Body = "a\nb" }, "groups.ab.ready_body", "a\nb"},
		{"check interval too short", func(g *Group) { g.CheckInterval = time.Millisecond }, "groups.ab.check_interval", "1ms"},
		{"metrics port is the front's", func(g *Group) { g.MetricsPort = 8080 }, "groups.ab.metrics_port", "8080"},
		{"no member", func(g *Group) { g.Members = nil }, "groups.ab.members", ""},
		{"member id with a slash", func(g *Group) { g.Members[0].ID = "a/b" }, "groups.ab.members", "a/b"},
		{"member twice", func(g *Group) { g.Members[1].ID = "ab-1" }, "groups.ab.members", "ab-1"},
		{"member address", func(g *Group) { g.Members[1].Address = "db2 example" }, "groups.ab.members.ab-2.address", "db2 example"},
		{"member port", func(g *Group) { g.Members[1].Port = -1 }, "groups.ab.members.ab-2.port", "-1"},
		{"member weight", func(g *Group) { g.Members[0].Weight = 257 }, "groups.ab.members.ab-1.weight", "257"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := validGroup()
			tc.edit(&g)
			err := g.Validate()
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Value != tc.value || fe.Rule == "" {
				t.Fatalf("Validate: %v, want a FieldError on %s with value %q", err, tc.field, tc.value)
			}
			if _, err := Render(g, "/run/x.sock"); err == nil {
				t.Error("Render rendered a group Validate refuses")
			}
		})
	}
	if err := validGroup().Validate(); err != nil {
		t.Errorf("valid group: %v", err)
	}
}

// TestRenderGolden compares the rendered configurations with testdata/, and
// has HAProxy check each one when it is installed.
func TestRenderGolden(t *testing.T) {
	path := validGroup()
	path.Name, path.Balance, path.Address, path.MetricsPort = "guide", Path, "::1", 9100
	path.Ready = ReadyCheck{Path: "/{id}/ping", Status: 200}
	path.Members = []Member{{ID: "p1", Address: "127.0.0.1", Port: 8001}, {ID: "p2", Address: "::1", Port: 8002}}
	hash := validGroup()
	hash.Balance, hash.Address, hash.CheckInterval = "hash:X-Session-Id", "0.0.0.0", 500*time.Millisecond
	// Regular-expression and path characters HAProxy's parser would take
	// for its own ($ variables, # comments, \ escapes, spaces, quotes) if
	// they were not quoted.
	hostile := validGroup()
	hostile.Name = "h-1.x_y"
	hostile.Ready = ReadyCheck{Path: "/a$HOME/x%20y/{}/;=@", Body: `"status"\s*:\s*"ok" #$PATH \"`}
	for name, g := range map[string]Group{"roundrobin": validGroup(), "path": path, "hash": hash, "hostile": hostile} {
		t.Run(name, func(t *testing.T) {
			got, err := Render(g, "/run/kato-front/"+g.Name+"/admin.sock")
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".cfg")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("Render differs from %s (go test -run TestRenderGolden -update):\n%s", golden, got)
			}
			if testing.Short() {
				return
			}
			bin := needHAProxy(t)
			// Checked where the unit places its files: the saved states
			// (servers.state) exist before HAProxy starts.
			dir := t.TempDir()
			cfg, err := Render(g, filepath.Join(dir, "admin.sock"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(StateFileFor(filepath.Join(dir, "admin.sock")), []byte("1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "front.cfg")
			if err := os.WriteFile(file, cfg, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "-c", "-f", file).CombinedOutput(); err != nil || strings.Contains(string(out), "WARNING") {
				t.Errorf("haproxy -c: %v\n%s", err, out)
			}
		})
	}
}

// TestRenderQuotingParsedByHAProxy runs HAProxy on values its parser
// would take for its own ($ variables, # comments, \ escapes) and checks
// that the member receives the ready path as given and that the body
// expression matches the body it should.
func TestRenderQuotingParsedByHAProxy(t *testing.T) {
	needHAProxy(t)
	const path = "/a$HOME/x%20y/{}/;=@"
	paths := make(chan string, 100)
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case paths <- r.RequestURI:
		default:
		}
		fmt.Fprint(w, `{"note": "#$PATH \\ ok"}`)
	}))
	defer member.Close()
	port, _ := strconv.Atoi(strings.TrimPrefix(member.URL, "http://127.0.0.1:"))
	g := Group{Name: "q", Address: "127.0.0.1", Port: freePort(t), CheckInterval: 100 * time.Millisecond,
		Ready:   ReadyCheck{Path: path, Body: `#\$PATH \\\\ ok`},
		Members: []Member{{ID: "m", Address: "127.0.0.1", Port: port}}}
	h := startFront(t, g)
	waitStates(t, h.client(), map[string]State{"m": Up})
	if got := <-paths; got != path {
		t.Errorf("the member received the ready request for %q, want %q", got, path)
	}
}
