package units

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// SocketProxyd is systemd's socket forwarder, which the private-network units
// run (systemd-socket-proxyd(8)).
const SocketProxyd = "/usr/lib/systemd/systemd-socket-proxyd"

// Templates of the private-network units, and the names of their instances:
// kato-proxy@ID.api, kato-proxy@ID.zmq and kato-link@ID.SERVICE.
const (
	proxyPrefix = "kato-proxy@"
	linkPrefix  = "kato-link@"
)

// PrivateNetwork describes the units that give one instance a network
// namespace of its own: host ports forwarded in, shared services forwarded
// out. RenderPrivateNetwork renders their drop-ins.
type PrivateNetwork struct {
	// ID is the instance id; ValidateInstanceID must accept it.
	ID string
	// Inbound are host ports forwarded to a port inside the namespace,
	// such as the API port to 8000.
	Inbound []Forward
	// Links are shared services on the host's network that the processor
	// reaches on 127.0.0.1 inside the namespace.
	Links []Link
}

// Forward is one host port forwarded into the namespace. Name is api or zmq.
type Forward struct {
	Name       string
	HostPort   int
	InsidePort int
}

// Link is one shared service forwarded out of the namespace: Port on
// 127.0.0.1 inside it is connected to Address (host:port) on the host's
// network. Name is a short lower-case word such as mongo.
type Link struct {
	Name    string
	Port    int
	Address string
}

// ProxySocket and ProxyService name the units of one forwarded host port.
func ProxySocket(id, name string) string  { return proxyPrefix + id + "." + name + ".socket" }
func ProxyService(id, name string) string { return proxyPrefix + id + "." + name + serviceSuffix }

// LinkSocket and LinkService name the units of one forwarded shared service.
func LinkSocket(id, name string) string  { return linkPrefix + id + "." + name + ".socket" }
func LinkService(id, name string) string { return linkPrefix + id + "." + name + serviceSuffix }

// NetworkPatterns match the private-network units of every instance, in the
// syntax of path.Match and of systemd's unit patterns.
func NetworkPatterns() []string { return []string{proxyPrefix + "*", linkPrefix + "*"} }

// NetworkUnitGlobs match the private-network units of the instance id, in
// the syntax of path.Match and of systemd's unit patterns. An id holds no
// '.', so they match no other instance's units.
func NetworkUnitGlobs(id string) []string {
	return []string{proxyPrefix + id + ".*", linkPrefix + id + ".*"}
}

// NetworkUnitID returns the instance id of a private-network unit name, such
// as processor-1 for kato-link@processor-1.mongo.socket; it reports false
// for any other unit.
func NetworkUnitID(unit string) (string, bool) {
	for _, prefix := range []string{proxyPrefix, linkPrefix} {
		rest, ok := strings.CutPrefix(unit, prefix)
		if !ok {
			continue
		}
		id, _, ok := strings.Cut(rest, ".")
		if ok && ValidateInstanceID(id) == nil {
			return id, true
		}
	}
	return "", false
}

// IsNetworkUnitOf reports whether unit is a private-network unit of the
// instance id.
func IsNetworkUnitOf(unit, id string) bool {
	for _, g := range NetworkUnitGlobs(id) {
		if ok, _ := path.Match(g, unit); ok {
			return true
		}
	}
	return false
}

// Members are the units that live in the instance's namespace, each of which
// must name all the others in JoinsNamespaceOf=, which is not transitive:
// the processor, the forwarders of host ports (they connect inside) and the
// sockets of shared services (they are bound inside).
func (n PrivateNetwork) Members() []string {
	out := []string{InstanceUnit(n.ID)}
	for _, f := range n.Inbound {
		out = append(out, ProxyService(n.ID, f.Name))
	}
	for _, l := range n.Links {
		out = append(out, LinkSocket(n.ID, l.Name))
	}
	return out
}

// Sockets are the socket units the processor's unit wants: the host ports,
// then the shared services.
func (n PrivateNetwork) Sockets() []string {
	var out []string
	for _, f := range n.Inbound {
		out = append(out, ProxySocket(n.ID, f.Name))
	}
	for _, l := range n.Links {
		out = append(out, LinkSocket(n.ID, l.Name))
	}
	return out
}

// Units are every unit of the private network, sockets and services.
func (n PrivateNetwork) Units() []string {
	var out []string
	for _, f := range n.Inbound {
		out = append(out, ProxySocket(n.ID, f.Name), ProxyService(n.ID, f.Name))
	}
	for _, l := range n.Links {
		out = append(out, LinkSocket(n.ID, l.Name), LinkService(n.ID, l.Name))
	}
	return out
}

// joins are the JoinsNamespaceOf= lines of member self: every other member.
func (n PrivateNetwork) joins(self string) []*unit.UnitEntry {
	var out []*unit.UnitEntry
	for _, m := range n.Members() {
		if m != self {
			out = append(out, entry("JoinsNamespaceOf", m))
		}
	}
	return out
}

// UnitDropIn is one rendered drop-in: the unit it belongs to and its content,
// to be written as Unit.d/DropInName.
type UnitDropIn struct {
	Unit    string
	Content []byte
}

// RenderPrivateNetwork renders the drop-ins of every unit of n's private
// network. Each unit is part of kato@ID.service, so stopping or restarting
// the instance stops or restarts them all.
func RenderPrivateNetwork(n PrivateNetwork) ([]UnitDropIn, error) {
	if err := ValidateInstanceID(n.ID); err != nil {
		return nil, err
	}
	instance := InstanceUnit(n.ID)
	seen := map[string]bool{}
	var out []UnitDropIn
	add := func(name string, sections ...*unit.UnitSection) {
		out = append(out, UnitDropIn{Unit: name, Content: render([]string{
			"Generated by kato-manager for the private network of KATO processor instance " + n.ID + ".",
			"kato-manager overwrites this file whenever it configures the instance and",
			"removes it when the instance stops.",
		}, sections...)})
	}
	for _, f := range n.Inbound {
		if err := checkForwardName(f.Name, seen); err != nil {
			return nil, err
		}
		if err := checkPort("host port of "+f.Name, f.HostPort); err != nil {
			return nil, err
		}
		if err := checkPort("inside port of "+f.Name, f.InsidePort); err != nil {
			return nil, err
		}
		svc := ProxyService(n.ID, f.Name)
		add(ProxySocket(n.ID, f.Name), section("Unit", entry("PartOf", instance)), section("Socket", entry("ListenStream", strconv.Itoa(f.HostPort))))
		exec, err := execLine([]string{SocketProxyd, "127.0.0.1:" + strconv.Itoa(f.InsidePort)})
		if err != nil {
			return nil, err
		}
		add(svc, section("Unit", append([]*unit.UnitEntry{entry("Requires", instance), entry("After", instance), entry("PartOf", instance)}, n.joins(svc)...)...),
			section("Service", entry("ExecStart", ""), entry("ExecStart", exec)))
	}
	for _, l := range n.Links {
		if err := checkForwardName(l.Name, seen); err != nil {
			return nil, err
		}
		if err := checkPort("port of "+l.Name, l.Port); err != nil {
			return nil, err
		}
		if err := checkText(l.Address); err != nil || l.Address == "" {
			return nil, fmt.Errorf("invalid address of %s %q: must be host:port", l.Name, l.Address)
		}
		sock := LinkSocket(n.ID, l.Name)
		add(sock, section("Unit", append([]*unit.UnitEntry{entry("PartOf", instance)}, n.joins(sock)...)...),
			section("Socket", entry("ListenStream", "127.0.0.1:"+strconv.Itoa(l.Port))))
		exec, err := execLine([]string{SocketProxyd, l.Address})
		if err != nil {
			return nil, err
		}
		add(LinkService(n.ID, l.Name), section("Unit", entry("PartOf", instance)), section("Service", entry("ExecStart", ""), entry("ExecStart", exec)))
	}
	return out, nil
}

// checkForwardName checks the name of a forward or link: it becomes part of
// unit names, so it is a short lower-case word, once per network.
func checkForwardName(name string, seen map[string]bool) error {
	if name == "" || len(name) > 32 {
		return fmt.Errorf("invalid forward name %q: must be 1 to 32 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("invalid forward name %q: may contain only lower-case letters, digits and '-'", name)
		}
	}
	if seen[name] {
		return fmt.Errorf("invalid forward name %q: used twice", name)
	}
	seen[name] = true
	return nil
}

// checkPort refuses a port outside ValidPort's range: the renderer checks
// what it writes into a unit even when its caller validated it before.
func checkPort(what string, p int) error {
	if !ValidPort(p) {
		return fmt.Errorf("invalid %s %d: %s", what, p, PortRule)
	}
	return nil
}

// isNetworkTemplate says whether name is one of the private network's
// template units, kato-proxy@ or kato-link@.
func isNetworkTemplate(name string) bool {
	return strings.HasPrefix(name, proxyPrefix) || strings.HasPrefix(name, linkPrefix)
}
