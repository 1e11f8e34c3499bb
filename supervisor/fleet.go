package supervisor

import (
	"context"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// InstanceSample is one instance as a scrape of /metrics sees it.
type InstanceSample struct {
	InstanceView
	// Group labels the instance's metrics with Processor: the group the
	// instance is part of in the registry, or "".
	Group      string
	Up         bool // active/running
	Ready      bool // its own process listens on its API port
	Restarts   uint32
	CPUSeconds float64
}

// WorkerSample is one KG worker unit systemd has loaded.
type WorkerSample struct {
	WorkerID    int
	Unit        string
	ActiveState string
	SubState    string
	Up          bool
	PID         uint32
	Restarts    uint32
}

// FleetSample is the fleet at one moment: every registered instance and
// every loaded worker unit.
type FleetSample struct {
	Instances []InstanceSample
	Workers   []WorkerSample
	At        time.Time
}

// Sample reads the fleet with one batched systemd query for instances and
// workers alike (UnitsWithProperties) and, per running instance, a look at
// the sockets of its main process. Memory and CPU come from systemd's
// accounting of each unit's cgroup; /proc is scanned only for the units
// systemd does not account.
func (m *Manager) Sample(ctx context.Context) (*FleetSample, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	list, err := m.Systemd.UnitsWithProperties(ctx, units.InstancePattern, units.WorkerPattern)
	if err != nil {
		return nil, err
	}
	now := m.now()
	byUnit := make(map[string]UnitState, len(list))
	procs := make(map[string]UnitProcesses, len(list))
	s := &FleetSample{Instances: []InstanceSample{}, Workers: []WorkerSample{}, At: now}
	for _, u := range list {
		byUnit[u.Name] = u
		procs[u.Name] = UnitProcesses{MainPID: int32(u.MainPID), RSS: u.MemoryCurrent, Started: u.ActiveSince}
		if n, ok := units.WorkerNumber(u.Name); ok && u.LoadState == "loaded" {
			s.Workers = append(s.Workers, WorkerSample{WorkerID: n, Unit: u.Name, ActiveState: u.ActiveState, SubState: u.SubState,
				Up: u.ActiveState == "active" && u.SubState == "running", PID: u.MainPID, Restarts: u.NRestarts})
		}
	}
	// Where systemd does not account memory or CPU (cgroup controllers
	// not enabled: MemoryAccounting=, CPUAccounting=), the processes of the
	// units it leaves out are read from /proc, in one pass for all of them.
	var unaccounted []string
	for _, inst := range reg.Instances {
		if u, ok := byUnit[inst.Unit]; ok && u.ActiveState == "active" && (u.MemoryCurrent == 0 || u.CPUUsageNSec == 0) {
			unaccounted = append(unaccounted, inst.Unit)
		}
	}
	if len(unaccounted) > 0 && m.Processes != nil {
		found, err := m.Processes.ByUnit(ctx, unaccounted)
		if err != nil {
			return nil, err
		}
		for unit, p := range found {
			u, mine := byUnit[unit], procs[unit]
			if u.MemoryCurrent == 0 {
				mine.RSS = p.RSS
			}
			if u.CPUUsageNSec == 0 {
				u.CPUUsageNSec = uint64(p.CPU * 1e9)
				byUnit[unit] = u
			}
			procs[unit] = mine
		}
	}
	for _, v := range m.instanceViews(reg, byUnit, procs, now) {
		u := byUnit[v.Unit]
		is := InstanceSample{InstanceView: v, Group: v.Group, Restarts: u.NRestarts,
			Up: v.ActiveState == "active" && v.SubState == "running"}
		if is.Up {
			is.CPUSeconds = float64(u.CPUUsageNSec) / 1e9
			// As start's readiness check: the main process listens on the
			// API port, or inside its namespace on a private network.
			port := v.APIPort
			if v.Network == config.NetworkPrivate {
				port = config.PrivateRESTPort
			}
			if is.Ready, err = m.listensOn(ctx, uint32(v.PID), port, false); err != nil {
				return nil, err
			}
		}
		s.Instances = append(s.Instances, is)
	}
	sortWorkers(s.Workers)
	return s, nil
}

func sortWorkers(w []WorkerSample) {
	for i := 1; i < len(w); i++ {
		for j := i; j > 0 && w[j].WorkerID < w[j-1].WorkerID; j-- {
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}
