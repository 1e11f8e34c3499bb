package config

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/kato-manager/kato-manager/units"
)

// RemoteMember is a member of a group whose front runs on this host while
// the member runs on another: registered there, in that host's registry,
// and known here only as the front reaches and rolls it. An apply of a
// fleet file whose entries name hosts stores them (see Registry.
// RemoteMembers).
type RemoteMember struct {
	Group string `toml:"group"`
	// Host is the [USER@]HOST its kato-manager is reached at over ssh.
	Host string `toml:"host"`
	// Address is where the front reaches it: Host less its USER@, a name
	// this host resolves or an IP address.
	Address string `toml:"address"`
	Port    int    `toml:"port"`
	Weight  int    `toml:"weight,omitempty"`
}

// HostAddress returns the address a [USER@]HOST names: the host less its
// user, without the brackets of an IPv6 address.
func HostAddress(host string) string {
	if i := strings.LastIndex(host, "@"); i >= 0 {
		host = host[i+1:]
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

// RemoteMemberRule is why a member on another host named by a loopback
// address cannot be one of this host's front.
const RemoteMemberRule = "a member of a group with a front on another host than the front's must be named by a host name or address the front's host reaches it at, not a loopback one (the front would reach itself)"

// IsLoopbackHost reports whether a [USER@]HOST names this host's loopback:
// localhost, or an address of 127.0.0.0/8 or ::1.
func IsLoopbackHost(host string) bool {
	a := HostAddress(host)
	if strings.EqualFold(a, "localhost") || strings.HasSuffix(strings.ToLower(a), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(a)
	return err == nil && ip.Unmap().IsLoopback()
}

// Validate reports the first field of m that cannot be a front's member,
// as a *FieldError.
func (m RemoteMember) Validate() error {
	if rule := units.GroupNameRule(m.Group); rule != "" {
		return &FieldError{Field: "group", Value: m.Group, Rule: rule}
	}
	if err := CheckHost(m.Host); err != nil {
		return &FieldError{Field: "host", Value: m.Host, Rule: err.Error()}
	}
	if IsLoopbackHost(m.Host) {
		return &FieldError{Field: "host", Value: m.Host, Rule: RemoteMemberRule}
	}
	if m.Address != HostAddress(m.Host) {
		return &FieldError{Field: "address", Value: m.Address, Rule: "must be the host's address, " + HostAddress(m.Host)}
	}
	if !units.ValidPort(m.Port) {
		return &FieldError{Field: "port", Value: strconv.Itoa(m.Port), Rule: units.PortRule}
	}
	if m.Weight != 0 && (m.Weight < 1 || m.Weight > MaxWeight) {
		return &FieldError{Field: "weight", Value: strconv.Itoa(m.Weight), Rule: WeightRule}
	}
	return nil
}

// HasRemoteMembers reports whether the group has members on other hosts.
func (r *Registry) HasRemoteMembers(group string) bool {
	for _, m := range r.RemoteMembers {
		if m.Group == group {
			return true
		}
	}
	return false
}

// RemoteMembersAt returns the ids of this host's remote members among
// refs, each HOST:ID as the hosts' diffs name them: a member counts only
// where its host is the one named.
func (r *Registry) RemoteMembersAt(refs []string) []string {
	var ids []string
	for _, ref := range refs {
		host, id, _ := strings.Cut(ref, ":")
		if rm, ok := r.RemoteMembers[id]; ok && rm.Host == host {
			ids = append(ids, id)
		}
	}
	return ids
}

// Fronted reports whether this host runs a front or knows a remote member:
// only then does an apply over hosts read their members back.
func (r *Registry) Fronted(cfg *Config) bool {
	if len(r.RemoteMembers) > 0 {
		return true
	}
	for _, n := range r.GroupNames(cfg) {
		if g, _ := r.Group(cfg, n); g.Front != 0 {
			return true
		}
	}
	return false
}
