package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
)

// hostsSSH plays beta's kato-manager for HostsApply: its diff removes b and
// restarts c, its apply applies, and its export shows c alone, on a new
// port. Each call is logged as "HOST VERB".
const hostsSSH = `#!/bin/sh
host=$7
set -- $8
cat >/dev/null
echo "$host $2" >>"$FAKE_SSH_LOG"
case "$2" in
diff) printf -- '- b (port 8101)\n^ c\n'; exit 1 ;;
apply) echo applied ;;
export) echo '{"instances": [{"id": "c", "group": "ab", "port": 8103}]}' ;;
esac
`

// TestHostsApplyKeepsFrontsInStep: an apply over hosts asks once about
// every removal, takes the members another host removes out of this
// host's front before that host applies, drains those it restarts and puts
// them back after, and reads back the members it runs then. When the
// front has no members on the hosts changed, systemd is not asked.
func TestHostsApplyKeepsFrontsInStep(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(hostsSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_SSH_LOG", filepath.Join(dir, "log"))
	ctx := context.Background()

	t.Run("members on the host", func(t *testing.T) {
		e, ff := newFrontEnv(t)
		if _, err := e.m.Start(ctx, StartRequest{ID: "a", Group: "ab", Parameters: config.DefaultParameters(), Timeout: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		found := map[string]config.RemoteMember{"b": {Group: "ab", Host: "beta", Address: "beta", Port: 8101}, "c": {Group: "ab", Host: "beta", Address: "beta", Port: 8102}}
		if err := e.m.SetRemoteMembers(ctx, []string{"beta"}, found); err != nil {
			t.Fatal(err)
		}
		ff.calls, ff.up = nil, []string{"a", "c"}
		var asked []string
		var trouble []error
		var callsAtHere []string
		o := &HostsApply{Source: &fleet.Source{Name: "f.yaml", Data: []byte("instances: []\n"), Hosts: []string{"beta"}, Fronts: true},
			Prune: true, Registry: e.m.Registry, Config: e.m.Config,
			Manager:     func() (*Manager, func(), error) { return e.m, func() {}, nil },
			Confirm:     func(removed []string) error { asked = removed; return nil },
			Here:        func() error { callsAtHere = slices.Clone(ff.calls); return nil },
			FrontsError: func(err error) { trouble = append(trouble, err) }}
		results, err := o.Apply(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(results) != 1 || string(results[0].Stdout) != "applied\n" {
			t.Errorf("results = %+v", results)
		}
		if !slices.Equal(asked, []string{"beta:b"}) {
			t.Errorf("asked about %q, want [beta:b]", asked)
		}
		if !slices.Equal(callsAtHere, []string{"drain b"}) {
			t.Errorf("front calls before this host applied: %q, want b drained out", callsAtHere)
		}
		if !slices.Equal(ff.calls, []string{"drain b", "drain c"}) {
			t.Errorf("front calls before beta applied: %q, want b out, then c drained", ff.calls)
		}
		if reg, _ := e.m.Registry.Load(); reg.RemoteMembers["b"].Host != "" {
			t.Error("b, removed on beta, is still a member here")
		}
		if err := o.Refresh(ctx, results); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ff.calls, []string{"drain b", "drain c", "ready c"}) {
			t.Errorf("front calls after the refresh: %q, want c put back", ff.calls)
		}
		if reg, _ := e.m.Registry.Load(); reg.RemoteMembers["c"].Port != 8103 {
			t.Errorf("c after the refresh: %+v, want port 8103 as beta exports it", reg.RemoteMembers["c"])
		}
		if trouble != nil {
			t.Errorf("fronts trouble: %v", trouble)
		}
	})

	t.Run("no members there", func(t *testing.T) {
		e := newTestEnv(t)
		called := false
		o := &HostsApply{Source: &fleet.Source{Name: "f.yaml", Data: []byte("instances: []\n"), Hosts: []string{"beta"}},
			Registry: e.m.Registry, Config: e.m.Config,
			Manager: func() (*Manager, func(), error) { called = true; return nil, nil, errors.New("no systemd") },
			Here:    func() error { t.Error("this host, with no entries and no fronts, applied"); return nil }}
		results, err := o.Apply(ctx)
		if err != nil || len(results) != 1 {
			t.Fatalf("Apply = %v, %v", results, err)
		}
		if err := o.Refresh(ctx, results); err != nil {
			t.Fatal(err)
		}
		if called {
			t.Error("systemd was asked, with no front and no members on beta")
		}
	})
}
