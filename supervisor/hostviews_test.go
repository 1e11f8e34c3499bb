package supervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/remote"
)

func TestMergeLists(t *testing.T) {
	rows, failed := MergeLists([]remote.Result{
		{Host: "a", Stdout: []byte(`[{"id":"x","api_port":8001},{"id":"y","api_port":8002}]`)},
		{Host: "down", Err: remote.ErrUnreachable, Stderr: "ssh: connect to host down port 22: Connection refused\n"},
		{Host: "odd", Stdout: []byte("not json")},
		{Host: "b", Stdout: []byte(`[]`)},
		{Host: "c", Stdout: []byte(`[{"id":"z","api_port":8003}]`)},
	})
	var got []string
	for _, r := range rows {
		got = append(got, r.Host+"/"+r.ID)
	}
	if strings.Join(got, " ") != "a/x a/y c/z" {
		t.Errorf("rows %q, want the hosts' instances in the hosts' order", got)
	}
	if len(failed) != 2 || failed[0].Host != "down" || !strings.Contains(failed[0].Message, "Connection refused") ||
		failed[1].Host != "odd" || !strings.Contains(failed[1].Message, "odd: unreadable answer of list --json") {
		t.Errorf("failed %+v, want down with ssh's words and odd's unreadable answer", failed)
	}
}

func TestMergeStatuses(t *testing.T) {
	healthy := `{"systemd_reachable":true,"systemd_version":"257","services":[],"instances":[],"fronts":[],"warnings":[]}`
	for _, tc := range []struct {
		name        string
		results     []remote.Result
		wantHealthy bool
		wantErrors  []string // per host, "" for one that answered
	}{
		{"all healthy", []remote.Result{{Host: "a", Stdout: []byte(healthy)}, {Host: "b", Stdout: []byte(healthy)}}, true, []string{"", ""}},
		{"unhealthy still answers", []remote.Result{{Host: "a", Stdout: []byte(`{"systemd_reachable":false,"systemd_error":"no bus"}`), Err: &remote.ExitError{Host: "a", Code: 1}}}, false, []string{""}},
		{"other exit is no answer", []remote.Result{{Host: "a", Stdout: []byte(healthy), Err: &remote.ExitError{Host: "a", Code: 2}, Stderr: "bad flag"}}, false, []string{"bad flag"}},
		{"unreachable", []remote.Result{{Host: "a", Stdout: []byte(healthy)}, {Host: "down", Err: errors.New("down: unreachable")}}, false, []string{"", "down: unreachable"}},
		{"unreadable", []remote.Result{{Host: "a", Stdout: []byte("{")}}, false, []string{"a: unreadable answer of status --json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all, ok := MergeStatuses(tc.results)
			if ok != tc.wantHealthy {
				t.Errorf("healthy = %v, want %v", ok, tc.wantHealthy)
			}
			if len(all) != len(tc.wantErrors) {
				t.Fatalf("%d hosts, want %d", len(all), len(tc.wantErrors))
			}
			for i, hs := range all {
				if hs.Host != tc.results[i].Host {
					t.Errorf("host %d is %s, want %s", i, hs.Host, tc.results[i].Host)
				}
				want := tc.wantErrors[i]
				if (want == "") != (hs.Status != nil) || !strings.Contains(hs.Error, want) {
					t.Errorf("%s: status %v, error %q; want error containing %q", hs.Host, hs.Status != nil, hs.Error, want)
				}
			}
		})
	}
}
