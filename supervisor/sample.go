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
	// LivenessRestarts are the restarts the liveness check made.
	LivenessRestarts uint64
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

// Sample is every registered instance and every loaded worker unit at one
// moment, as the dashboard and /metrics show them.
type Sample struct {
	Instances []InstanceSample
	Workers   []WorkerSample
	// Fronts are the groups' fronts, each stats socket read once.
	Fronts []FrontView
	At     time.Time
}

// Sample reads the instances and workers with one systemd call for both
// (ListUnits) and no per-unit call when nothing changed: the units'
// restarts, main process and start time come from m.Services, which reads
// a unit only when it appears or systemd signals that it changed (with a
// nil m.Services every unit is read). Memory and CPU come from each
// running instance's cgroup files, /proc only where the cgroup does not
// account them; readiness from a look at the sockets of its main process.
func (m *Manager) Sample(ctx context.Context) (*Sample, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	list, err := m.Systemd.ListUnits(ctx, units.InstancePattern, units.WorkerPattern, units.FrontPattern)
	if err != nil {
		return nil, err
	}
	list, frontUnits := splitFronts(list)
	if err := m.Services.fill(ctx, m.Systemd, list); err != nil {
		return nil, err
	}
	now := m.now()
	byUnit := make(map[string]UnitState, len(list))
	procs := make(map[string]UnitProcesses, len(list))
	cpu := make(map[string]time.Duration, len(reg.Instances))
	s := &Sample{Instances: []InstanceSample{}, Workers: []WorkerSample{}, Fronts: m.readFronts(ctx, frontUnits), At: now}
	for _, u := range list {
		byUnit[u.Name] = u
		procs[u.Name] = UnitProcesses{MainPID: int32(u.MainPID), Started: u.ActiveSince}
		if n, ok := units.WorkerNumber(u.Name); ok && u.LoadState == "loaded" {
			s.Workers = append(s.Workers, WorkerSample{WorkerID: n, Unit: u.Name, ActiveState: u.ActiveState, SubState: u.SubState,
				Up: u.ActiveState == "active" && u.SubState == "running", PID: u.MainPID, Restarts: u.NRestarts})
		}
	}
	// Where the cgroup does not account memory or CPU (its controllers not
	// enabled) or is unknown, the processes of the units it leaves out are
	// read from /proc, in one pass for all of them.
	root := m.CgroupRoot
	if root == "" {
		root = DefaultCgroupRoot
	}
	var unaccounted []string
	memOK := map[string]bool{}
	for _, inst := range reg.Instances {
		u, ok := byUnit[inst.Unit]
		if !ok || u.ActiveState != "active" {
			continue
		}
		usage := ReadCgroup(root, u.ControlGroup)
		p := procs[inst.Unit]
		p.RSS, memOK[inst.Unit] = usage.MemoryBytes, usage.MemoryOK
		procs[inst.Unit] = p
		if usage.CPUOK {
			cpu[inst.Unit] = usage.CPU
		}
		if !usage.MemoryOK || !usage.CPUOK {
			unaccounted = append(unaccounted, inst.Unit)
		}
	}
	if len(unaccounted) > 0 && m.Processes != nil {
		found, err := m.Processes.ByUnit(ctx, unaccounted)
		if err != nil {
			return nil, err
		}
		for unit, p := range found {
			mine := procs[unit]
			if !memOK[unit] {
				mine.RSS = p.RSS
			}
			if _, ok := cpu[unit]; !ok {
				cpu[unit] = time.Duration(p.CPU * float64(time.Second))
			}
			procs[unit] = mine
		}
	}
	views := m.instanceViews(reg, byUnit, procs, now)
	in := memberships(s.Fronts)
	for i := range views {
		views[i].Front = in[views[i].ID]
	}
	// As start's readiness check: the main process listens on the API
	// port, or inside its namespace on a private network. With a cache
	// (serve), each socket found is remembered and checked again with one
	// readlink; otherwise the sockets of every running instance are read
	// in one pass.
	var asks []listenAsk
	for _, v := range views {
		if v.PID != 0 {
			asks = append(asks, listenAsk{pid: v.PID, started: v.Since, port: readinessPort(v)})
		}
	}
	ready, err := m.listeningOn(ctx, asks)
	if err != nil {
		return nil, err
	}
	// An unreadable state file counts no liveness restart.
	liveness, _ := m.LivenessRestarts()
	for _, v := range views {
		u := byUnit[v.Unit]
		is := InstanceSample{InstanceView: v, Group: v.Group, Restarts: u.NRestarts, LivenessRestarts: liveness[v.ID],
			Up: v.ActiveState == "active" && v.SubState == "running"}
		if is.Up {
			is.CPUSeconds = cpu[v.Unit].Seconds()
			is.Ready = v.PID != 0 && ready[listenAsk{pid: v.PID, started: v.Since, port: readinessPort(v)}]
		}
		s.Instances = append(s.Instances, is)
	}
	sortWorkers(s.Workers)
	return s, nil
}

// readinessPort is the port an instance's main process listens on once it
// is ready: the API port, or inside its namespace on a private network.
func readinessPort(v InstanceView) int {
	if v.Network == config.NetworkPrivate {
		return config.PrivateRESTPort
	}
	return v.APIPort
}

// listeningOn answers asks through m.Services's memo of listening sockets
// when the ports are this host's, else through one ListeningByEach.
func (m *Manager) listeningOn(ctx context.Context, asks []listenAsk) (map[listenAsk]bool, error) {
	out := make(map[listenAsk]bool, len(asks))
	if len(asks) == 0 {
		return out, nil
	}
	if _, host := m.Ports.(HostPorts); host && m.Services != nil {
		return m.Services.listening.listening(ctx, asks)
	}
	pids := make([]int32, 0, len(asks))
	for _, a := range asks {
		pids = append(pids, a.pid)
	}
	listening, err := m.Ports.ListeningByEach(ctx, pids)
	if err != nil {
		return nil, err
	}
	for _, a := range asks {
		out[a] = listening[a.pid][a.port]
	}
	return out, nil
}

func sortWorkers(w []WorkerSample) {
	for i := 1; i < len(w); i++ {
		for j := i; j > 0 && w[j].WorkerID < w[j-1].WorkerID; j-- {
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}
