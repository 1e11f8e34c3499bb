package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/kato-manager/kato-manager/units"
)

// Group is a [groups.NAME] section of kato.toml: how the group's members
// are made (scale) and the front that balances requests over them.
type Group struct {
	// Front is the port the group's front (kato-front@NAME.service)
	// listens on; 0 is a group without a front.
	Front int `toml:"front,omitempty"`
	// Address is the address the front listens on; "" is every address,
	// as a processor listens.
	Address string `toml:"address,omitempty"`
	// Balance is leastconn (the default when empty), roundrobin, path or
	// hash:HEADER.
	Balance string `toml:"balance,omitempty"`
	// Ready overrides the processor's ready request for the front's
	// checks, such as "GET /health".
	Ready string `toml:"ready,omitempty"`
	// Template names the [templates.NAME] scale makes members of;
	// Processor the processor, when no template is given.
	Template  string `toml:"template,omitempty"`
	Processor string `toml:"processor,omitempty"`
	// Surge is how many extra members, made as scale makes replicas, a
	// rolling restart of the group (restart --group, an apply's roll)
	// starts before any member goes out, as Kubernetes' maxSurge; a
	// command's --surge wins.
	Surge int `toml:"surge,omitempty"`
}

// Balance algorithms of a front, as [groups.NAME] balance takes them.
const (
	BalanceLeastConn  = "leastconn"
	BalanceRoundRobin = "roundrobin"
	BalancePath       = "path"
	BalanceHashPrefix = "hash:"
)

// BalanceRule is the rule a group's balance follows.
const BalanceRule = "must be leastconn, roundrobin, path or hash:HEADER with HEADER a header name"

// MaxReplicas bounds the replicas of a group: scale --group and a fleet
// entry's replicas.
const MaxReplicas = 256

// MaxWeight bounds a member's weight.
const MaxWeight = 256

// WeightRule is the rule a member's weight follows.
const WeightRule = "must be between 1 and 256"

var headerNameRule = regexp.MustCompile("^[A-Za-z0-9!%&*+.^_`|~-]+$")

// ValidBalance reports whether b is a balance a group may have; "" is
// leastconn.
func ValidBalance(b string) bool {
	switch {
	case b == "", b == BalanceLeastConn, b == BalanceRoundRobin, b == BalancePath:
		return true
	case strings.HasPrefix(b, BalanceHashPrefix):
		return headerNameRule.MatchString(strings.TrimPrefix(b, BalanceHashPrefix))
	}
	return false
}

// GroupNamed returns the [groups.NAME] section of name and whether there is
// one.
func (c *Config) GroupNamed(name string) (Group, bool) {
	g, ok := c.Groups[name]
	return g, ok
}

// validateGroups checks every [groups.NAME], by name, as a *FieldError
// named groups.NAME.KEY.
func (c *Config) validateGroups() error {
	names := make([]string, 0, len(c.Groups))
	for n := range c.Groups {
		names = append(names, n)
	}
	slices.Sort(names)
	fronts := map[int]string{}
	for _, name := range names {
		g := c.Groups[name]
		if err := c.CheckGroup(name, g); err != nil {
			return err
		}
		if g.Front != 0 {
			if other, ok := fronts[g.Front]; ok {
				return &FieldError{Field: "groups." + name + ".front", Value: strconv.Itoa(g.Front), Rule: "must differ from the front of group " + other}
			}
			fronts[g.Front] = name
		}
	}
	return nil
}

// CheckGroup checks the group name's settings g against c (its ports, its
// templates and processors), as a *FieldError named groups.NAME.KEY.
func (c *Config) CheckGroup(name string, g Group) error {
	{
		if rule := units.GroupNameRule(name); rule != "" {
			return &FieldError{Field: "groups", Value: name, Rule: "name " + rule}
		}
		field := func(key string) string { return "groups." + name + "." + key }
		if g.Front != 0 {
			if !units.ValidPort(g.Front) {
				return &FieldError{Field: field("front"), Value: strconv.Itoa(g.Front), Rule: units.PortRule}
			}
			if g.Front >= c.Ports.APIStart && g.Front <= c.Ports.APIEnd || g.Front >= c.Ports.ZMQStart && g.Front <= c.Ports.ZMQEnd {
				return &FieldError{Field: field("front"), Value: strconv.Itoa(g.Front), Rule: "must be outside the ports instances are given (ports.api_start to api_end and zmq_start to zmq_end)"}
			}
		}
		if g.Address != "" {
			if _, err := netip.ParseAddr(g.Address); err != nil {
				return &FieldError{Field: field("address"), Value: g.Address, Rule: "must be an IP address, or left out for every address"}
			}
		}
		if !ValidBalance(g.Balance) {
			return &FieldError{Field: field("balance"), Value: g.Balance, Rule: BalanceRule}
		}
		if g.Ready != "" {
			path, ok := strings.CutPrefix(g.Ready, "GET /")
			if !ok || strings.ContainsFunc(path, func(r rune) bool {
				return unicode.IsSpace(r) || unicode.IsControl(r) || r == '?' || r == '#' || r == '\''
			}) {
				return &FieldError{Field: field("ready"), Value: g.Ready, Rule: "must be GET followed by a path such as /health"}
			}
		}
		if g.Surge < 0 || g.Surge > MaxReplicas {
			return &FieldError{Field: field("surge"), Value: strconv.Itoa(g.Surge), Rule: fmt.Sprintf("must be between 0 and %d", MaxReplicas)}
		}
		if g.Surge > 0 && g.Template == "" && g.Processor == "" {
			return &FieldError{Field: field("surge"), Value: strconv.Itoa(g.Surge), Rule: "goes with a template or processor to make extra members from"}
		}
		if g.Template != "" && g.Processor != "" {
			return &FieldError{Field: field("processor"), Value: g.Processor, Rule: "must be left out when template is given (the template names the processor)"}
		}
		if g.Template != "" {
			if _, ok := c.Templates[g.Template]; !ok {
				_, err := c.TemplateNamed(field("template"), g.Template)
				return err
			}
		}
		if g.Processor != "" {
			if _, err := c.ProcessorNamed(g.Processor); err != nil {
				return prefixField("groups."+name+".", err)
			}
		}
	}
	return nil
}
