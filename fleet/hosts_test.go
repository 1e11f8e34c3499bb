package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/remote"
)

// TestNewSourceSplitsByHost: a file is handed to the hosts its entries
// name, and this host takes part when it has entries or none names a host;
// a host handed the file hands it to none.
func TestNewSourceSplitsByHost(t *testing.T) {
	for _, tc := range []struct {
		name, file, entriesOf string
		hosts                 []string
		local                 bool
	}{
		{"no hosts", "instances:\n  - {id: a}\n", "", nil, true},
		{"no entries: this host's to say so", "instances: []\n", "", nil, true},
		{"this host and two others", "instances:\n  - {id: a}\n  - {id: b, host: ops@beta}\n  - {id: c, host: alpha}\n  - {id: d, host: alpha}\n", "", []string{"alpha", "ops@beta"}, true},
		{"only other hosts", "instances:\n  - {id: b, host: beta}\n", "", []string{"beta"}, false},
		{"handed to beta", "instances:\n  - {id: a}\n  - {id: b, host: beta}\n", "beta", nil, true},
		{"handed to a host without entries", "instances:\n  - {id: a}\n  - {id: b, host: beta}\n", "gamma", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFleet("f.yaml", []byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			src := NewSource(f, "f.yaml", []byte(tc.file), tc.entriesOf)
			if !slices.Equal(src.Hosts, tc.hosts) || src.Local != tc.local || src.Name != "f.yaml" || string(src.Data) != tc.file {
				t.Errorf("source = %+v, want hosts %q, local %v", src, tc.hosts, tc.local)
			}
		})
	}
}

// TestDiffPending: another host's diff exits 0 without changes, 1 with,
// and anything else is its refusal.
func TestDiffPending(t *testing.T) {
	unreachable := fmt.Errorf("beta: %w", remote.ErrUnreachable)
	for _, tc := range []struct {
		name    string
		err     error
		pending bool
		wantErr error
	}{
		{"no changes", nil, false, nil},
		{"changes", &remote.ExitError{Host: "beta", Code: 1}, true, nil},
		{"the file refused", &remote.ExitError{Host: "beta", Code: 2}, false, &remote.ExitError{}},
		{"not reached", unreachable, false, remote.ErrUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pending, err := DiffPending(remote.Result{Host: "beta", Err: tc.err})
			if pending != tc.pending {
				t.Errorf("pending = %v, want %v", pending, tc.pending)
			}
			var exit *remote.ExitError
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.wantErr == remote.ErrUnreachable && !errors.Is(err, remote.ErrUnreachable):
				t.Errorf("err = %v, want ErrUnreachable", err)
			case tc.wantErr != nil && tc.wantErr != remote.ErrUnreachable && (!errors.As(err, &exit) || exit.Code != 2):
				t.Errorf("err = %v, want the exit status 2", err)
			}
		})
	}
}

func TestDiffRemovals(t *testing.T) {
	diff := "+ new\n    port: 8004\n~ changed\n    port: 8002 -> 8012\n- extra (port 8003)\n- other (port 8005)\nplan: 1 to create, 1 to change (restart), 2 to remove, 0 unchanged\n"
	if got := DiffRemovals([]byte(diff)); !slices.Equal(got, []string{"extra", "other"}) {
		t.Errorf("DiffRemovals = %q, want [extra other]", got)
	}
	if got := DiffRemovals(nil); got != nil {
		t.Errorf("DiffRemovals of nothing = %q", got)
	}
}

func TestDiffRestarts(t *testing.T) {
	diff := "+ new\n    port: 8004\n~ changed\n    port: 8002 -> 8012\n^ stale\n- extra (port 8003)\nplan: 1 to create, 1 to change (restart), 1 to remove, 0 unchanged\n"
	if got := DiffRestarts([]byte(diff)); !slices.Equal(got, []string{"changed", "stale"}) {
		t.Errorf("DiffRestarts = %q, want [changed stale]", got)
	}
}

func TestPlanRemovals(t *testing.T) {
	p := Plan{Steps: []Step{{Action: Create, ID: "a"}, {Action: Remove, ID: "b"}, {Action: Keep, ID: "c"}, {Action: Remove, ID: "d"}}}
	if got := p.Removals(); !slices.Equal(got, []string{"b", "d"}) {
		t.Errorf("Removals = %q, want [b d]", got)
	}
}

// fakeSSH plays every host's kato-manager: it logs "HOST VERB", refuses the
// file on host "bad", plans the removal of x elsewhere, and applies.
const fakeSSH = `#!/bin/sh
host=$7
set -- $8
cat >/dev/null
echo "$host $2" >>"$FAKE_SSH_LOG"
case "$host:$2" in
bad:diff) echo "refused here" >&2; exit 2 ;;
*:diff) echo "- x (port 8001)"; exit 1 ;;
*:apply) echo applied ;;
esac
`

// TestApplyOnHostsAllOrNone: a file is applied on no host when one refuses
// it, and otherwise after one confirmation, this host first.
func TestApplyOnHostsAllOrNone(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(fakeSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, tc := range []struct {
		name    string
		hosts   []string
		refused bool
	}{
		{"one host refuses", []string{"alpha", "bad"}, true},
		{"all accept", []string{"alpha", "beta"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "log")
			t.Setenv("FAKE_SSH_LOG", logFile)
			logged := func() []string {
				data, _ := os.ReadFile(logFile)
				return strings.Fields(strings.ReplaceAll(string(data), " ", "_"))
			}
			var asked []string
			var stderr strings.Builder
			src := &Source{Name: "f.yaml", Data: []byte("instances: []\n"), Hosts: tc.hosts, Local: true}
			results, err := src.Apply(context.Background(), HostsApply{
				Prune: true, Stderr: &stderr,
				Confirm: func(removed []string) error { asked = removed; return nil },
				Here: func() error {
					f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
					if err != nil {
						return err
					}
					defer f.Close()
					_, err = f.WriteString("here\n")
					return err
				},
			})
			got := logged()
			if tc.refused {
				var refused *RefusedError
				if !errors.As(err, &refused) || !slices.Equal(refused.Refusals, []string{"bad: kato-manager on bad exited with status 2"}) || refused.Hosts != 2 {
					t.Fatalf("err = %v, want bad's refusal", err)
				}
				if asked != nil || len(got) != 2 || stderr.String() != "bad: refused here\n" {
					t.Errorf("after a refusal: asked %q, calls %q, stderr %q; want nothing asked, the two diffs only, bad's message", asked, got, stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"alpha:x", "beta:x"}; !slices.Equal(asked, want) {
				t.Errorf("asked about %q, want %q", asked, want)
			}
			if len(got) != 5 || got[2] != "here" || !strings.HasSuffix(got[0], "_diff") || !strings.HasSuffix(got[1], "_diff") || !strings.HasSuffix(got[3], "_apply") || !strings.HasSuffix(got[4], "_apply") {
				t.Errorf("calls = %q, want both diffs, then here, then both applies", got)
			}
			if len(results) != 2 || string(results[0].Stdout) != "applied\n" || results[1].Host != "beta" {
				t.Errorf("results = %+v", results)
			}
		})
	}
}

// TestHandedFileRunsNoFront: the host that hands a file on runs its
// groups' fronts; a host handed the file stores the groups without one.
func TestHandedFileRunsNoFront(t *testing.T) {
	file := "groups:\n  web: {front: 9400, balance: roundrobin, template: t}\ninstances:\n  - {id: a, group: web}\n  - {id: b, host: beta, group: web}\n"
	f, err := ParseFleet("f.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if g := NewSource(f, "f.yaml", []byte(file), "").Groups["web"]; g.Front != 9400 || g.Balance != "roundrobin" {
		t.Errorf("this host's group web = %+v, want its front", g)
	}
	if g := NewSource(f, "f.yaml", []byte(file), "beta").Groups["web"]; g.Front != 0 || g.Balance != "" || g.Template != "t" {
		t.Errorf("beta's group web = %+v, want no front and the template kept", g)
	}
	// Every entry on another host: this host still runs the front, with
	// no entry of its own (nothing to prune).
	remoteOnly := "groups:\n  web: {front: 9400}\ninstances:\n  - {id: b, host: beta, group: web}\n"
	f, err = ParseFleet("f.yaml", []byte(remoteOnly))
	if err != nil {
		t.Fatal(err)
	}
	if src := NewSource(f, "f.yaml", []byte(remoteOnly), ""); src.Local || !src.Fronts {
		t.Errorf("source of a file with only remote members: local %v, fronts %v; want false, true", src.Local, src.Fronts)
	}
}

// TestLoopbackRemoteMemberRefused: an entry on another host in a group
// whose front runs here may not name its host by a loopback address; the
// error names the line, the field, the value and the rule.
func TestLoopbackRemoteMemberRefused(t *testing.T) {
	c := config.Default()
	c.Groups = map[string]config.Group{"api": {Front: 9500}}
	for _, tc := range []struct{ name, file, want string }{
		{"file's group", "groups:\n  web: {front: 9400}\ninstances:\n  - {id: a, group: web}\n  - id: b\n    group: web\n    host: root@127.0.0.1\n", "f.yaml:7: b: invalid host root@127.0.0.1: a member of a group with a front"},
		{"kato.toml's group, replicas", "instances:\n  - {id: api, replicas: 2, host: localhost}\n", "invalid host localhost"},
		{"ipv6 loopback", "groups:\n  web: {front: 9400}\ninstances:\n  - {id: b, group: web, host: '[::1]'}\n", "invalid host [::1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadFleet(c, "f.yaml", []byte(tc.file), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadFleet: %v, want %q", err, tc.want)
			}
		})
	}
	// Not in a fronted group, or handed to that host: no front here to
	// reach it from.
	for _, file := range []string{"instances:\n  - {id: b, host: localhost}\n", "groups:\n  web: {}\ninstances:\n  - {id: b, group: web, host: localhost}\n"} {
		if _, _, err := ReadFleet(c, "f.yaml", []byte(file), ""); err != nil {
			t.Errorf("ReadFleet of %q: %v", file, err)
		}
	}
}

// TestDiffOnHosts: a diff over hosts has changes when any host's has, and
// names the first host that refused the file.
func TestDiffOnHosts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(fakeSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_SSH_LOG", filepath.Join(dir, "log"))
	src := &Source{Name: "f.yaml", Data: []byte("instances: []\n"), Hosts: []string{"alpha", "bad", "beta"}}
	results, pending, err := src.Diff(context.Background(), nil)
	if len(results) != 3 || !pending || err == nil || err.Error() != "host bad: kato-manager on bad exited with status 2" {
		t.Errorf("Diff = %d results, pending %v, %v; want 3, true, bad's refusal", len(results), pending, err)
	}
	src.Hosts = []string{"alpha"}
	if _, pending, err := src.Diff(context.Background(), nil); !pending || err != nil {
		t.Errorf("Diff on alpha = %v, %v; want its changes", pending, err)
	}
}
