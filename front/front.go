// Package front owns a group's front: the HAProxy configuration that
// balances requests over the group's members, the client of HAProxy's
// runtime API that reads and changes the members' states, and the rolling
// restart that takes members out of the rotation a few at a time.
//
// The front is HAProxy itself (kato-front@GROUP.service runs `haproxy -Ws`
// on the file Render produces); this package decides what goes into that
// file and talks to the running process through its admin socket.
package front

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// Balance algorithms of a front.
const (
	LeastConn  = "leastconn"  // the member with the fewest requests in flight (KATO's own guide)
	RoundRobin = "roundrobin" // in turn, in proportion to the weights
	Path       = "path"       // /{id}/... to the member of that id (generation A's gateway paths)
	hashPrefix = "hash:"      // hash:HEADER, one member per value of the header
)

// HealthyBody is the ready check's body expression for generation C, whose
// GET /health answers 200 even when unhealthy and says which in its body.
const HealthyBody = `"status"\s*:\s*"healthy"`

// DefaultCheckInterval is how often HAProxy sends each member its ready
// request when the group does not say.
const DefaultCheckInterval = 2 * time.Second

// RuntimeDir is where kato-front@GROUP.service keeps its admin socket: its
// RuntimeDirectory.
const RuntimeDir = "/run/kato-front"

// ConfigDir is where kato-manager writes each front's configuration,
// GROUP.cfg, that kato-front@GROUP.service runs.
const ConfigDir = "/etc/kato/fronts"

// SocketPath returns the admin socket of the front of group, as the unit
// places it.
func SocketPath(group string) string { return RuntimeDir + "/" + group + "/admin.sock" }

// ConfigPath returns the configuration file of the front of group.
func ConfigPath(group string) string { return ConfigDir + "/" + group + ".cfg" }

// Group is what a front balances: its address and the members behind it.
type Group struct {
	Name    string // the group's name; also names the front's unit
	Address string // address the front listens on; "" is every interface
	Port    int    // port the front listens on
	// Balance is leastconn (the default when empty), roundrobin, path or
	// hash:HEADER.
	Balance string
	Ready   ReadyCheck
	// CheckInterval is the time between two ready requests to a member;
	// zero is DefaultCheckInterval. Two failures in a row take a member out
	// of the rotation, two successes put it back.
	CheckInterval time.Duration
	// MetricsPort, when not zero, serves HAProxy's Prometheus exporter at
	// http://127.0.0.1:MetricsPort/metrics.
	MetricsPort int
	Members     []Member
}

// ReadyCheck is the request HAProxy sends each member to decide whether it
// is in the rotation, and the answer it expects.
type ReadyCheck struct {
	// Path is the request's path, such as /health; {id} stands for the
	// member's id, allowed only with balance path where each member has a
	// check of its own.
	Path string
	// Status is the expected status; zero is 200.
	Status int
	// Body, when not empty, is a regular expression the answer's body must
	// match, such as HealthyBody.
	Body string
}

// Member is one processor instance behind the front.
type Member struct {
	ID      string // the instance's id; the server's name in HAProxy
	Address string // the address the front reaches it at (its host's)
	Port    int
	// Weight is its share of the requests against the other members'
	// weights, 1 to 256; zero is 1.
	Weight int
}

// The rules are compiled when first used, not when the package is
// initialized: every command of kato-manager imports this package, and
// hostRule's bounded repetitions alone took a third of a millisecond of
// each command's start.
var (
	nameRule = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })
	hostRule = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	})
	// Header names as HTTP allows them, less the characters HAProxy's
	// parser reads in an unquoted word (# comments, $ variables, quotes).
	headerRule  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^[A-Za-z0-9!%&*+.^_`|~-]+$") })
	readyPathRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/[A-Za-z0-9._~!$&()*+,;=:@%/{}-]*$`) })
)

// Backend is the name of the HAProxy backend holding a member: one for the
// whole group, or one per member with balance path.
func (g Group) Backend(memberID string) string {
	if g.balance() == Path {
		return "member_" + memberID
	}
	return "members"
}

func (g Group) balance() string {
	if g.Balance == "" {
		return LeastConn
	}
	return g.Balance
}

// Validate reports the first setting of g that cannot make a front, as a
// *config.FieldError naming the field, the value and the rule.
func (g Group) Validate() error {
	field := func(name string) string { return "groups." + g.Name + "." + name }
	if !nameRule().MatchString(g.Name) {
		return &config.FieldError{Field: "group name", Value: g.Name, Rule: "must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"}
	}
	if g.Address != "" {
		if _, err := netip.ParseAddr(g.Address); err != nil {
			return &config.FieldError{Field: field("address"), Value: g.Address, Rule: "must be an IP address, or empty for every interface"}
		}
	}
	if !units.ValidPort(g.Port) {
		return &config.FieldError{Field: field("front"), Value: strconv.Itoa(g.Port), Rule: units.PortRule}
	}
	if g.MetricsPort != 0 && (!units.ValidPort(g.MetricsPort) || g.MetricsPort == g.Port) {
		return &config.FieldError{Field: field("metrics_port"), Value: strconv.Itoa(g.MetricsPort), Rule: units.PortRule + ", other than the front's"}
	}
	b := g.balance()
	switch {
	case b == LeastConn, b == RoundRobin, b == Path:
	case strings.HasPrefix(b, hashPrefix) && headerRule().MatchString(strings.TrimPrefix(b, hashPrefix)):
	default:
		return &config.FieldError{Field: field("balance"), Value: g.Balance, Rule: "must be leastconn, roundrobin, path or hash:HEADER with HEADER a header name"}
	}
	if !readyPathRe().MatchString(g.Ready.Path) {
		return &config.FieldError{Field: field("ready"), Value: g.Ready.Path, Rule: "must be a path such as /health, of letters, digits and URL punctuation"}
	}
	if strings.Contains(g.Ready.Path, "{id}") && b != Path {
		return &config.FieldError{Field: field("ready"), Value: g.Ready.Path, Rule: "may hold {id} only with balance path, where each member is checked on its own"}
	}
	if s := g.Ready.Status; s != 0 && (s < 100 || s > 599) {
		return &config.FieldError{Field: field("ready_status"), Value: strconv.Itoa(s), Rule: "must be an HTTP status between 100 and 599"}
	}
	if body := g.Ready.Body; body != "" {
		if _, err := regexp.Compile(body); err != nil || strings.ContainsAny(body, "'\n\r\x00") {
			return &config.FieldError{Field: field("ready_body"), Value: body, Rule: "must be a regular expression on one line without a single quote"}
		}
	}
	if g.CheckInterval < 0 || (g.CheckInterval > 0 && g.CheckInterval < 10*time.Millisecond) {
		return &config.FieldError{Field: field("check_interval"), Value: g.CheckInterval.String(), Rule: "must be at least 10ms, or zero for the default"}
	}
	if len(g.Members) == 0 {
		return &config.FieldError{Field: field("members"), Value: "", Rule: "must name at least one member"}
	}
	seen := map[string]bool{}
	for _, m := range g.Members {
		mf := func(name string) string { return field("members." + m.ID + "." + name) }
		if !nameRule().MatchString(m.ID) {
			return &config.FieldError{Field: field("members"), Value: m.ID, Rule: "each member's id must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"}
		}
		if seen[m.ID] {
			return &config.FieldError{Field: field("members"), Value: m.ID, Rule: "must name each member once"}
		}
		seen[m.ID] = true
		if _, err := netip.ParseAddr(m.Address); err != nil && !hostRule().MatchString(m.Address) {
			return &config.FieldError{Field: mf("address"), Value: m.Address, Rule: "must be an IP address or a host name"}
		}
		if !units.ValidPort(m.Port) {
			return &config.FieldError{Field: mf("port"), Value: strconv.Itoa(m.Port), Rule: units.PortRule}
		}
		if m.Weight < 0 || m.Weight > 256 {
			return &config.FieldError{Field: mf("weight"), Value: strconv.Itoa(m.Weight), Rule: "must be between 1 and 256 (0 means 1)"}
		}
	}
	return nil
}

// Render returns the HAProxy configuration of g's front, with its admin
// socket at socket, after validating g. Everything taken from g is either
// checked against a strict rule by Validate or quoted.
func Render(g Group, socket string) ([]byte, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if socket == "" || strings.ContainsAny(socket, "'\n\r\x00") || !strings.HasPrefix(socket, "/") {
		return nil, &config.FieldError{Field: "front socket", Value: socket, Rule: "must be an absolute path without a single quote"}
	}
	inter := g.CheckInterval
	if inter == 0 {
		inter = DefaultCheckInterval
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# The front of group %s, generated by kato-manager from the group's members.", g.Name)
	w("# Do not edit: it is rewritten whenever the members change.")
	w("global")
	// The admin socket: member states for kato-manager, and the listening
	// sockets handed to the next process on reload (no connection refused).
	w("    stats socket %s mode 600 level admin expose-fd listeners", quote(socket))
	// A read-only socket beside it for kato-manager serve, root without
	// CAP_DAC_OVERRIDE: open to all, reached only through the unit's 0700
	// runtime directory (root's CAP_DAC_READ_SEARCH); level user changes
	// nothing.
	w("    stats socket %s mode 666 level user", quote(StatsSocketFor(socket)))
	w("    stats timeout 30s")
	// Members' states saved before a reload (ReloadKeepingState), read by
	// the new worker: a drain, a maintenance or a weight set at run time
	// survives it.
	w("    server-state-file %s", quote(StateFileFor(socket)))
	// After a reload the old process finishes its connections, websockets
	// included, for at most this long.
	w("    hard-stop-after 30m")
	// One thread: the front shares the host's cores with the members it
	// balances, and a second thread costs more CPU per request than it
	// gives (docs/benchmarks.md); one carries several times the requests a
	// KATO processor answers.
	w("    nbthread 1")
	w("")
	w("defaults")
	w("    mode http")
	w("    load-server-state-from-file global")
	// Connections to the members are kept and reused between requests
	// (HAProxy's default, http-reuse safe), as the guide's nginx keeps 32:
	// a request costs HAProxy two reads and two writes and a share of one
	// wait for events, where closing the member's connection after each
	// (option http-server-close) took 2.7 times its CPU per request. No
	// section names a log target, so no request is logged. The other
	// settings measured (docs/benchmarks.md, "The front's cost") did not
	// move its CPU per request.
	w("    http-reuse safe")
	// On a reload the old process answers one more request on each idle
	// client connection (with Connection: close) instead of closing it
	// under a client that may be sending a request that cannot be retried.
	w("    option idle-close-on-response")
	w("    timeout connect 2s")
	w("    timeout client 60s")
	w("    timeout server 60s")
	w("    timeout http-request 10s")
	// Websockets (generation C's /ws) are a tunnel once upgraded.
	w("    timeout tunnel 1h")
	w("    timeout client-fin 5s")
	// A member whose port refuses gets one more try, on another member.
	w("    retries 2")
	w("    option redispatch 1")
	// So does a request a member closed the connection under without an
	// answer (a member killed): only a GET, HEAD or OPTIONS, which do
	// nothing twice; a request of another method may have been acted on,
	// and is retried only when it was never sent (the frontend's
	// disable-l7-retry).
	w("    retry-on conn-failure empty-response")
	w("    default-server inter %dms fastinter %dms downinter %dms fall 2 rise 2 init-addr last,libc,none", inter.Milliseconds(), inter.Milliseconds(), inter.Milliseconds())
	w("")
	w("frontend front")
	w("    bind %s", bindAddr(g.Address, g.Port))
	w("    http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS")
	members := g.Members
	if g.balance() == Path {
		for _, m := range members {
			w("    use_backend %s if { path %s } || { path_beg %s }", g.Backend(m.ID), quote("/"+m.ID), quote("/"+m.ID+"/"))
		}
		w("    default_backend unknown_member")
		w("")
		w("backend unknown_member")
		w("    http-request return status 404 content-type text/plain string %s", quote("no member of group "+g.Name+" has this id"))
		for _, m := range members {
			w("")
			w("backend %s", g.Backend(m.ID))
			renderCheck(w, g, strings.ReplaceAll(g.Ready.Path, "{id}", m.ID))
			renderServer(w, m)
		}
	} else {
		w("    default_backend members")
		w("")
		w("backend members")
		switch bal := g.balance(); {
		case strings.HasPrefix(bal, hashPrefix):
			w("    balance hdr(%s)", strings.TrimPrefix(bal, hashPrefix))
			// Adding or removing a member moves only its share of the
			// clients.
			w("    hash-type consistent")
		default:
			w("    balance %s", bal)
		}
		renderCheck(w, g, g.Ready.Path)
		for _, m := range members {
			renderServer(w, m)
		}
	}
	if g.MetricsPort != 0 {
		w("")
		w("frontend metrics")
		w("    bind 127.0.0.1:%d", g.MetricsPort)
		w("    http-request use-service prometheus-exporter if { path /metrics }")
		w("    http-request return status 404")
	}
	return b.Bytes(), nil
}

func renderCheck(w func(string, ...any), g Group, path string) {
	status := g.Ready.Status
	if status == 0 {
		status = 200
	}
	w("    option httpchk")
	w("    http-check send meth GET uri %s ver HTTP/1.1 hdr Host %s", quote(path), quote(g.Name))
	w("    http-check expect status %d", status)
	if g.Ready.Body != "" {
		w("    http-check expect rstring %s", quote(g.Ready.Body))
	}
}

func renderServer(w func(string, ...any), m Member) {
	weight := m.Weight
	if weight == 0 {
		weight = 1
	}
	addr := m.Address
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
		addr = "[" + a.String() + "]"
	}
	w("    server %s %s:%d weight %d check", m.ID, addr, m.Port, weight)
}

func bindAddr(addr string, port int) string {
	if addr == "" {
		return ":" + strconv.Itoa(port)
	}
	a := netip.MustParseAddr(addr)
	if a.Is6() {
		return "[" + a.String() + "]:" + strconv.Itoa(port)
	}
	return a.String() + ":" + strconv.Itoa(port)
}

// quote puts s between single quotes, inside which HAProxy's parser takes
// every character as it is (no escape, no variable); Validate and Render
// refuse a single quote in what they quote.
func quote(s string) string { return "'" + s + "'" }
