package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/units"
)

// FrontTimeout bounds the read of one front's stats socket: a front that
// does not answer within it is shown as such.
const FrontTimeout = time.Second

// FrontView is a group's front as list, status, the dashboard and /metrics
// show it: its unit, where it listens and how it balances (from its
// rendered configuration), and what its stats socket says of its members.
type FrontView struct {
	Group       string `json:"group"`
	Unit        string `json:"unit"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state"`
	Address     string `json:"address,omitempty"`
	Port        int    `json:"port"`
	Balance     string `json:"balance"`
	// Answering says the front's stats socket answered; Error says why it
	// did not, or why its configuration could not be read.
	Answering bool          `json:"answering"`
	Error     string        `json:"error,omitempty"`
	Requests  uint64        `json:"requests"`
	Errors    uint64        `json:"errors"`
	Members   []FrontMember `json:"members"`
	Counts    MemberCounts  `json:"counts"`
	// Problem is what makes status unhealthy: not running, not answering,
	// a member down or no member up.
	Problem string `json:"problem,omitempty"`
}

// FrontMember is one member of a front as the front sees it.
type FrontMember struct {
	ID string `json:"id"`
	// Host is the [USER@]HOST a member on another host runs on; empty for
	// this host's.
	Host     string      `json:"host,omitempty"`
	Backend  string      `json:"backend"`
	State    front.State `json:"state"`
	Status   string      `json:"status"` // HAProxy's own word, such as "UP" or "DOWN 1/2"
	Sessions int         `json:"sessions"`
	Weight   int         `json:"weight"`
	Requests uint64      `json:"requests"`
	Errors   uint64      `json:"errors"`
}

// MemberCounts counts a front's members by state.
type MemberCounts struct {
	Up          int `json:"up"`
	Draining    int `json:"draining"`
	Down        int `json:"down"`
	Maintenance int `json:"maintenance"`
}

// String is the counts as tables show them: "2 up, 1 draining, 0 down",
// with maintenance only when there is some.
func (c MemberCounts) String() string {
	s := fmt.Sprintf("%d up, %d draining, %d down", c.Up, c.Draining, c.Down)
	if c.Maintenance > 0 {
		s += fmt.Sprintf(", %d maint", c.Maintenance)
	}
	return s
}

// State is the front unit's short state, as InstanceView.State.
func (v FrontView) State() string {
	return InstanceView{ActiveState: v.ActiveState, SubState: v.SubState}.State()
}

// Membership is an instance's place in a front: which group's front and
// the state the front sees it in.
type Membership struct {
	Group    string      `json:"group"`
	State    front.State `json:"state"`
	Sessions int         `json:"sessions"`
}

// frontRuntime returns the runtime that reads the front of group: the
// FrontRuntime hook, else a client of the front's read-only stats socket
// (its admin socket for a front rendered before it had one).
func (m *Manager) frontRuntime(group string) front.Runtime {
	if m.FrontRuntime != nil {
		return m.FrontRuntime(group)
	}
	path := front.StatsSocketFor(m.frontSocket(group))
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		path = m.frontSocket(group)
	}
	return front.NewClient(path)
}

func (m *Manager) frontConfigPath(group string) string {
	return filepath.Join(m.frontDir(), group+".cfg")
}

// splitFronts takes the fronts' units out of a listing.
func splitFronts(list []UnitState) (rest, fronts []UnitState) {
	for _, u := range list {
		if _, ok := units.FrontGroup(u.Name); ok {
			fronts = append(fronts, u)
		} else {
			rest = append(rest, u)
		}
	}
	return rest, fronts
}

// readFronts reads every listed front: its configuration, and the stats
// socket of each running one, all sockets at once, each for at most
// FrontTimeout. A front that cannot be read says so in its view.
func (m *Manager) readFronts(ctx context.Context, list []UnitState) []FrontView {
	views := make([]FrontView, 0, len(list))
	for _, u := range list {
		if u.LoadState != "" && u.LoadState != "loaded" {
			continue
		}
		group, _ := units.FrontGroup(u.Name)
		views = append(views, FrontView{Group: group, Unit: u.Name, ActiveState: u.ActiveState, SubState: u.SubState, Members: []FrontMember{}})
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Group < views[j].Group })
	var remote map[string]config.RemoteMember
	if m.Registry != nil {
		if reg, err := m.Registry.Load(); err == nil {
			remote = reg.RemoteMembers
		}
	}
	var wg sync.WaitGroup
	for i := range views {
		v := &views[i]
		if cfg, err := os.ReadFile(m.frontConfigPath(v.Group)); err != nil {
			v.Error = fmt.Sprintf("configuration: %v", err)
		} else if l, ok := front.ReadRendered(cfg); ok {
			v.Address, v.Port, v.Balance = l.Address, l.Port, l.Balance
		}
		if v.ActiveState != "active" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, FrontTimeout)
			defer cancel()
			st, err := m.frontRuntime(v.Group).Stats(rctx)
			if err != nil {
				v.Error = err.Error()
				return
			}
			v.Answering, v.Requests, v.Errors = true, st.Requests, st.Errors
			for _, ms := range st.Members {
				v.Members = append(v.Members, FrontMember{ID: ms.ID, Host: remote[ms.ID].Host, Backend: ms.Backend, State: ms.State, Status: ms.Status,
					Sessions: ms.Sessions, Weight: ms.Weight, Requests: ms.Requests, Errors: ms.Errors})
				switch ms.State {
				case front.Up:
					v.Counts.Up++
				case front.Draining:
					v.Counts.Draining++
				case front.Maintenance:
					v.Counts.Maintenance++
				default:
					v.Counts.Down++
				}
			}
		}()
	}
	wg.Wait()
	for i := range views {
		views[i].Problem = frontProblem(views[i])
	}
	return views
}

// frontProblem is what is wrong with a front, or "".
func frontProblem(v FrontView) string {
	switch {
	case v.ActiveState != "active":
		return "not running"
	case !v.Answering:
		return fmt.Sprintf("its stats socket does not answer (%s)", v.Error)
	case v.Counts.Up == 0:
		return "no member up"
	case v.Counts.Down > 0:
		var down []string
		for _, mb := range v.Members {
			if mb.State == front.Down {
				down = append(down, mb.ID)
			}
		}
		return fmt.Sprintf("member %s down", strings.Join(down, ", "))
	}
	return ""
}

// memberships maps each instance id to its place in the fronts.
func memberships(fronts []FrontView) map[string]*Membership {
	out := map[string]*Membership{}
	for _, f := range fronts {
		for _, mb := range f.Members {
			out[mb.ID] = &Membership{Group: f.Group, State: mb.State, Sessions: mb.Sessions}
		}
	}
	return out
}
