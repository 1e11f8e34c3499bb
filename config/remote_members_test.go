package config

import (
	"slices"
	"testing"
)

// TestRemoteMembersAt: a diff's HOST:ID names a remote member only where
// the member runs on that host.
func TestRemoteMembersAt(t *testing.T) {
	r := &Registry{RemoteMembers: map[string]RemoteMember{
		"web-b": {Group: "web", Host: "beta", Address: "beta", Port: 8001},
		"web-c": {Group: "web", Host: "kato@gamma", Address: "gamma", Port: 8001},
	}}
	got := r.RemoteMembersAt([]string{"beta:web-b", "gamma:web-c", "kato@gamma:web-c", "beta:web-x", "alpha:web-b"})
	if want := []string{"web-b", "web-c"}; !slices.Equal(got, want) {
		t.Errorf("RemoteMembersAt = %v, want %v", got, want)
	}
}

// TestFronted: a host reads its members back from the other hosts only
// when one of its groups has a front or it knows a remote member.
func TestFronted(t *testing.T) {
	cfg := &Config{Groups: map[string]Group{"plain": {}}}
	if (&Registry{}).Fronted(cfg) {
		t.Error("a group without a front counts as fronted")
	}
	if !(&Registry{RemoteMembers: map[string]RemoteMember{"a": {}}}).Fronted(cfg) {
		t.Error("a remote member does not count as fronted")
	}
	cfg.Groups["web"] = Group{Front: 9000}
	if !(&Registry{}).Fronted(cfg) {
		t.Error("a group with a front does not count as fronted")
	}
}
