package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/units"
)

// Manager drives KATO instances: it keeps the registry, the per-instance
// unit files and systemd's view of them in step.
type Manager struct {
	Systemd   Systemd
	Config    *config.Config
	Registry  *config.RegistryFile
	Ports     Ports
	Processes Processes
	Journal   Journal
	Paths     Paths
	// Probe makes a processor's health request: GET path on 127.0.0.1:port,
	// returning the HTTP status; nil means over HTTP.
	Probe func(ctx context.Context, port int, path string) (int, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RunTool runs a host tool (systemd-sysusers, systemd-tmpfiles) when
	// units are installed; nil means exec it.
	RunTool func(ctx context.Context, argv ...string) error
	// PollInterval is how often readiness is checked; zero means 20ms.
	PollInterval time.Duration
	// Services caches the units' Service properties for Sample; nil
	// means Sample reads every unit from systemd.
	Services *ServiceCache
	// CgroupRoot is the cgroup2 mount; empty means DefaultCgroupRoot.
	CgroupRoot string
	// ProcRoot is the proc mount, where the environment a processor was
	// started with is read; empty means /proc.
	ProcRoot string
	// Waiting, when set, is told what a single Start, Restart or Stop
	// waits for, each time that changes; calls come one at a time.
	// Batches report through BatchOptions.Progress instead.
	Waiting func(Wait)
	// FrontDir holds the fronts' configurations, GROUP.cfg; empty means
	// front.ConfigDir, where kato-front@.service reads them.
	FrontDir string
	// FrontAdmin returns the runtime API of a group's front that changes
	// it (drain, ready); nil means its admin socket, front.SocketPath.
	FrontAdmin func(group string) front.Runtime
	// FrontRuntime returns what reads the front of a group; nil means its
	// read-only stats socket under front.RuntimeDir.
	FrontRuntime func(group string) front.Runtime
	// RemoteRun runs kato-manager with args on another host, for the
	// members of this host's fronts that run there; nil means over ssh
	// (remote.Run).
	RemoteRun func(ctx context.Context, host string, args []string) error
	// RemoteOutput runs kato-manager with args on another host and returns
	// what it wrote, as RemoteRun; nil means over ssh.
	RemoteOutput func(ctx context.Context, host string, args []string) ([]byte, error)
}

// StartRequest is what `kato-manager start` asks for. Zero ports mean the
// configured defaults; a nil Command means the global processor command.
type StartRequest struct {
	ID         string
	Name       string
	APIPort    int
	ZMQPort    int
	Parameters config.Parameters
	Command    []string
	// Processor names the processor of kato.toml to run; "" is [processor].
	Processor string
	// Network is config.NetworkHost or config.NetworkPrivate; "" is the
	// processor's network.
	Network string
	// Group is the group the instance is part of, or "".
	Group string
	// Weight is its share of the group's front, 1 to 256; 0 is 1.
	Weight int
	// Explicit lists the settings the user gave, so that starting an
	// existing instance can say which of them it ignores.
	Explicit []string
	// Timeout bounds the wait for the API port; zero means the configured
	// processor ready_timeout.
	Timeout time.Duration
}

// StartResult says what Start did.
type StartResult struct {
	Instance       config.Instance
	AlreadyRunning bool
	Notices        []string
}

// StartError is a failed start: the cause and the unit's last log lines.
type StartError struct {
	Unit    string
	Err     error
	Journal []string
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// ErrNotReady is returned when a processor does not answer its health
// request in time, or exits before it does.
var ErrNotReady = errors.New("processor not ready")

// ErrUnregisteredUnit is returned when a start or apply would create an
// instance whose unit still runs without a registry entry: kato-manager did
// not start that process, so it neither takes it over nor stops it.
var ErrUnregisteredUnit = errors.New("instance unit runs unregistered")

// ErrPortHeld is returned when the instance's API port is held by a process
// that is not the instance's: the processor cannot bind it, and a health
// request there would be answered by that process.
var ErrPortHeld = errors.New("API port held by another process")

// ErrCrossTalk is returned when a generation-A instance would share the
// host's ZMQ port 5555 with another: its gateway would answer with the other
// instance's engine.
var ErrCrossTalk = errors.New("generation-A instances would share one engine")

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) dropInPath(id string) string { return m.Paths.DropInPath(id) }

func (m *Manager) envPath(id string) string { return m.Paths.EnvPath(id) }

// Start registers, configures and starts an instance, and waits until its
// processor listens on the API port. A new instance that fails to come up is
// rolled back completely. An existing stopped instance starts with its
// stored settings; a running one is left alone.
func (m *Manager) Start(ctx context.Context, req StartRequest) (*StartResult, error) {
	if req.ID == "" {
		req.ID = config.GenerateID(m.now(), os.Getpid())
	}
	if err := ValidateStart(req); err != nil {
		return nil, err
	}
	if _, err := m.Config.ProcessorNamed(req.Processor); err != nil {
		return nil, err
	}
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return m.startLocked(ctx, req)
}

// lockedRegistry takes the registry's operations lock and reads the
// registry under it. The caller defers release; on an error the lock is
// already given back.
func (m *Manager) lockedRegistry(ctx context.Context) (*config.Registry, func(), error) {
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, nil, err
	}
	reg, err := m.Registry.Load()
	if err != nil {
		release()
		return nil, nil, err
	}
	return reg, release, nil
}

// startLocked is Start for a caller holding the operations lock, with req
// validated.
func (m *Manager) startLocked(ctx context.Context, req StartRequest) (*StartResult, error) {
	if err := m.EnsureUnits(ctx); err != nil {
		return nil, err
	}
	if reg, err := m.Registry.Load(); err != nil {
		return nil, err
	} else if _, ok := reg.Instances[req.ID]; !ok {
		if err := m.refuseUnregistered(ctx, []string{req.ID}); err != nil {
			return nil, err
		}
		if err := m.checkGroupFront(reg, req.Group); err != nil {
			return nil, err
		}
	}
	res := &StartResult{}
	var created bool
	err := m.Registry.Update(func(r *config.Registry) error {
		m.dropUnusedZMQPorts(r)
		if existing, ok := r.Instances[req.ID]; ok {
			res.Instance = *existing
			return nil
		}
		inst, notices, err := m.newInstance(ctx, r, req)
		if err != nil {
			return err
		}
		r.Instances[inst.ID] = &inst
		res.Instance, res.Notices, created = inst, notices, true
		return nil
	})
	if err != nil {
		return nil, err
	}
	inst := res.Instance
	if created && inst.Group != "" {
		if err := m.syncGroups(ctx); err != nil {
			return nil, errors.Join(err, m.rollback(context.WithoutCancel(ctx), inst, true), m.syncGroups(context.WithoutCancel(ctx)))
		}
	}
	if !created {
		u, err := m.Systemd.Unit(ctx, inst.Unit)
		if err != nil {
			return nil, err
		}
		if u.Active() {
			res.AlreadyRunning = true
			return res, nil
		}
		if len(req.Explicit) > 0 {
			res.Notices = append(res.Notices, fmt.Sprintf("instance %s exists: starting it with its stored settings, ignoring %s (stop it first to change them)", inst.ID, strings.Join(req.Explicit, ", ")))
		}
	}
	if err := m.launch(ctx, inst, req.Timeout); err != nil {
		se := m.startError(ctx, inst.Unit, err)
		if rbErr := m.rollback(context.WithoutCancel(ctx), inst, created); rbErr != nil {
			se.Err = fmt.Errorf("%w; rollback: %v", err, rbErr)
		}
		if created && inst.Group != "" {
			if gErr := m.syncGroups(context.WithoutCancel(ctx)); gErr != nil {
				se.Err = fmt.Errorf("%w; group %s: %v", se.Err, inst.Group, gErr)
			}
		}
		return nil, se
	}
	if inst.Group != "" {
		// The front takes the member once it is ready.
		if err := m.syncFronts(ctx, nil); err != nil {
			return nil, fmt.Errorf("instance %s started: %w", inst.ID, err)
		}
	}
	return res, nil
}

// refuseUnregistered fails when the unit of any of ids, none of them
// registered, is running: its registry entry was removed while it ran (the
// multi-instance guide's troubleshooting step did so). Creating the instance
// again would give it new ports while the old process holds the old ones,
// and a failed start's rollback would stop a process kato-manager did not
// start; so it refuses at once and names the way out.
func (m *Manager) refuseUnregistered(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = units.InstanceUnit(id)
	}
	loaded, err := m.Systemd.ListUnits(ctx, names...)
	if err != nil {
		return err
	}
	var errs []error
	for _, u := range loaded {
		id, ok := units.InstanceID(u.Name)
		if !ok || !slices.Contains(ids, id) || !(u.Active() || u.ActiveState == "deactivating") {
			continue
		}
		next := fmt.Sprintf("`kato-manager stop %s`", id)
		if !m.hasUnitFiles(id) {
			next = fmt.Sprintf("`systemctl stop %s`", u.Name)
		}
		errs = append(errs, fmt.Errorf("%s is %s but instance %s is not registered (its registry entry was removed while it ran); kato-manager did not start that process and leaves it alone: run %s first, then start %s again: %w",
			u.Name, u.ActiveState, id, next, id, ErrUnregisteredUnit))
	}
	return errors.Join(errs...)
}

// foreignHolder returns the pid of a process listening on port on the host
// that is not one of unit's processes, or 0 when the port is free, held by
// the unit, or held by a process whose pid cannot be seen. mainPID, when
// known, answers the common case without a scan of every process.
func (m *Manager) foreignHolder(ctx context.Context, unit string, mainPID uint32, port int) (int32, error) {
	if mainPID != 0 {
		if ports, err := m.Ports.ListeningBy(ctx, int32(mainPID)); err == nil && ports[port] {
			return 0, nil
		}
	}
	// A bind probe first: two system calls, where looking for the holder
	// reads the sockets of every process on the host.
	if inUse, err := m.Ports.InUse(ctx, port); err != nil || !inUse {
		return 0, err
	}
	holders, err := m.Ports.Listening(ctx)
	if err != nil {
		return 0, err
	}
	pid, ok := holders[port]
	if !ok || pid == 0 {
		return 0, nil
	}
	procs, err := m.Processes.ByUnit(ctx, []string{unit})
	if err != nil {
		return 0, err
	}
	if slices.Contains(procs[unit].PIDs, pid) {
		return 0, nil
	}
	return pid, nil
}

// portHeldError says that pid, not the unit, holds the API port.
func portHeldError(unit string, port int, pid int32, when string) error {
	return fmt.Errorf("API port %d is held by pid %d, not by %s (%s): the processor cannot listen there and a health request would reach that process; stop pid %d or give the instance another port: %w",
		port, pid, unit, when, pid, ErrPortHeld)
}

// ValidateStart checks what a start request says by itself, before any
// registry or systemd work. An empty ID passes: Start generates one.
func ValidateStart(req StartRequest) error {
	if req.ID == "" {
		req.ID = "generated"
	}
	if err := config.ValidateID(req.ID); err != nil {
		return err
	}
	if req.Name != "" {
		if err := config.ValidateName(req.Name); err != nil {
			return err
		}
	}
	if err := req.Parameters.Validate(); err != nil {
		return err
	}
	for _, p := range []struct {
		field string
		value int
	}{{"port", req.APIPort}, {"zmq_port", req.ZMQPort}} {
		if p.value != 0 && !units.ValidPort(p.value) {
			return &config.FieldError{Field: p.field, Value: fmt.Sprint(p.value), Rule: units.PortRule}
		}
	}
	if len(req.Command) > 0 && !filepath.IsAbs(req.Command[0]) {
		return &config.FieldError{Field: "processor_command", Value: strings.Join(req.Command, " "), Rule: "the executable must be an absolute path"}
	}
	if req.Network != "" && req.Network != config.NetworkHost && req.Network != config.NetworkPrivate {
		return &config.FieldError{Field: "network", Value: req.Network, Rule: "must be host or private"}
	}
	if req.Group != "" {
		if rule := units.GroupNameRule(req.Group); rule != "" {
			return &config.FieldError{Field: "group", Value: req.Group, Rule: rule}
		}
	}
	if req.Weight != 0 {
		if req.Weight < 1 || req.Weight > config.MaxWeight {
			return &config.FieldError{Field: "weight", Value: strconv.Itoa(req.Weight), Rule: config.WeightRule}
		}
		if req.Group == "" {
			return &config.FieldError{Field: "weight", Value: strconv.Itoa(req.Weight), Rule: "goes with a group: it is a share of the group's requests"}
		}
	}
	return nil
}

// processorKey is how the registry names a processor: "" for [processor].
func processorKey(name string) string {
	if name == config.DefaultProcessor {
		return ""
	}
	return name
}

// hostEngineHolder returns the id of a registered generation-A instance,
// other than id, on the host network, or "".
func (m *Manager) hostEngineHolder(r *config.Registry, id string) string {
	for _, other := range r.Sorted() {
		if other.ID == id || other.Network != config.NetworkHost {
			continue
		}
		if p, err := m.Config.ProcessorNamed(other.Processor); err == nil && p.Generation == units.GenerationA {
			return other.ID
		}
	}
	return ""
}

// dropUnusedZMQPorts clears the ZMQ port of every registered instance whose
// processor has none (generation B), which versions before this one gave
// them, so that the port is free for an instance that uses it. It returns
// the ids it corrected. Start and apply call it in their registry update.
func (m *Manager) dropUnusedZMQPorts(r *config.Registry) []string {
	var ids []string
	for _, in := range r.Sorted() {
		if in.ZMQPort == 0 {
			continue
		}
		if p, err := m.Config.ProcessorNamed(in.Processor); err == nil && p.Generation != units.GenerationA {
			in.ZMQPort = 0
			ids = append(ids, in.ID)
		}
	}
	return ids
}

// newInstance builds a registry entry with ports that no registered
// instance reserves and no process listens on. It runs under the registry
// lock, so concurrent starts never get the same port.
func (m *Manager) newInstance(ctx context.Context, r *config.Registry, req StartRequest) (config.Instance, []string, error) {
	return m.allocateInstance(ctx, r, req, nil)
}

// allocateInstance is newInstance counting the ports in free as not in use:
// those of instances an apply removes before it starts the new ones.
func (m *Manager) allocateInstance(ctx context.Context, r *config.Registry, req StartRequest, free map[int]bool) (config.Instance, []string, error) {
	proc, err := m.Config.ProcessorNamed(req.Processor)
	if err != nil {
		return config.Instance{}, nil, err
	}
	network := req.Network
	if network == "" {
		network = proc.Network
	}
	if network == config.NetworkPrivate && m.Paths.User {
		return config.Instance{}, nil, &config.FieldError{Field: "network", Value: network,
			Rule: "is not available with --user: the forwarding socket units of a private network need the system manager; use --network host"}
	}
	if err := checkGenerationCNetwork(proc, network); err != nil {
		return config.Instance{}, nil, err
	}
	if proc.Generation != units.GenerationA && req.ZMQPort != 0 {
		return config.Instance{}, nil, &config.FieldError{Field: "zmq_port", Value: strconv.Itoa(req.ZMQPort), Rule: "must not be set for a generation-" + proc.Generation + " processor, which serves HTTP only and has no ZMQ port"}
	}
	// Generation A's gateway always talks to the engine on localhost:5555:
	// on the host network only one such instance can run, on ZMQ port 5555.
	engineOn5555 := proc.Generation == units.GenerationA && network == config.NetworkHost
	if engineOn5555 {
		if other := m.hostEngineHolder(r, req.ID); other != "" {
			return config.Instance{}, nil, fmt.Errorf("instance %s already runs a generation-A processor on the host network, and a generation-A gateway always talks to the engine on localhost:5555: %s would answer with %s's engine and learn into it; start it with --network private: %w", other, req.ID, other, ErrCrossTalk)
		}
		if req.ZMQPort != 0 && req.ZMQPort != config.PrivateZMQPort {
			return config.Instance{}, nil, &config.FieldError{Field: "zmq_port", Value: strconv.Itoa(req.ZMQPort), Rule: "must be 5555 for a generation-A processor on the host network, whose gateway always talks to ZMQ port 5555 (or use --network private)"}
		}
		req.ZMQPort = config.PrivateZMQPort
	}
	reserved := r.ReservedPorts()
	var probeErr error
	taken := func(p int) bool {
		if _, res := reserved[p]; res {
			return true
		}
		if free[p] {
			return false
		}
		inUse, err := m.Ports.InUse(ctx, p)
		if err != nil && probeErr == nil {
			probeErr = err
		}
		return inUse || err != nil
	}
	why := func(p int) string {
		if owner, ok := reserved[p]; ok {
			return "reserved by instance " + owner
		}
		return "in use"
	}
	var notices []string
	pick := func(kind string, want, first, last int) (int, error) {
		if want == 0 {
			want = first
		}
		p, err := AllocatePort(want, last, taken)
		if probeErr != nil {
			return 0, fmt.Errorf("allocate %s port: %w", kind, probeErr)
		}
		if err != nil {
			return 0, fmt.Errorf("allocate %s port: %w", kind, err)
		}
		if p != want {
			notices = append(notices, fmt.Sprintf("%s port %d is %s; using %d", kind, want, why(want), p))
		}
		reserved[p] = req.ID
		return p, nil
	}
	ports := m.Config.Ports
	api, err := pick("API", req.APIPort, ports.APIStart, ports.APIEnd)
	if err != nil {
		return config.Instance{}, nil, err
	}
	var zmq int
	switch {
	case proc.Generation != units.GenerationA:
		// Generation B serves HTTP only: a ZMQ port would be held for nothing.
	case engineOn5555:
		if taken(config.PrivateZMQPort) {
			if probeErr != nil {
				return config.Instance{}, nil, probeErr
			}
			return config.Instance{}, nil, fmt.Errorf("ZMQ port 5555 is %s, and a generation-A processor on the host network needs it: its gateway always talks to ZMQ port 5555; start it with --network private: %w", why(config.PrivateZMQPort), ErrCrossTalk)
		}
		zmq = config.PrivateZMQPort
	default:
		if zmq, err = pick("ZMQ", req.ZMQPort, ports.ZMQStart, ports.ZMQEnd); err != nil {
			return config.Instance{}, nil, err
		}
	}
	name := req.Name
	if name == "" {
		name = config.DefaultInstanceName
	}
	now := m.now().UTC().Truncate(time.Second)
	return config.Instance{
		ID:         req.ID,
		Name:       name,
		Unit:       units.InstanceUnit(req.ID),
		APIPort:    api,
		ZMQPort:    zmq,
		Command:    req.Command,
		Processor:  processorKey(req.Processor),
		Network:    network,
		Group:      req.Group,
		Weight:     req.Weight,
		Parameters: req.Parameters,
		Created:    now,
		Updated:    now,
	}, notices, nil
}

// instanceSetup is everything kato-manager renders for one instance, from
// its registry entry and the global configuration.
type instanceSetup struct {
	proc    config.Processor
	env     units.ProcessorEnv
	dropIn  units.InstanceDropIn
	network *units.PrivateNetwork
	// readyPort and listenPort are where the health request goes (on the
	// host) and the port the processor itself listens on (inside its
	// namespace on a private network).
	readyPort, listenPort int
}

func (m *Manager) setup(inst config.Instance) (*instanceSetup, error) {
	proc, err := m.Config.ProcessorNamed(inst.Processor)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", inst.ID, err)
	}
	su := &instanceSetup{proc: proc, readyPort: inst.APIPort, listenPort: inst.APIPort}
	rest, zmq, mongo := inst.APIPort, inst.ZMQPort, m.Config.Services.MongoURL
	if inst.Network == config.NetworkPrivate {
		rest, zmq = config.PrivateRESTPort, config.PrivateZMQPort
		su.listenPort = rest
		if mongo, err = m.Config.Services.PrivateMongoURL(); err != nil {
			return nil, err
		}
		links, err := m.Config.Services.PrivateLinks()
		if err != nil {
			return nil, err
		}
		n := &units.PrivateNetwork{ID: inst.ID, Inbound: []units.Forward{{Name: "api", HostPort: inst.APIPort, InsidePort: rest}}}
		if proc.Generation == units.GenerationA {
			n.Inbound = append(n.Inbound, units.Forward{Name: "zmq", HostPort: inst.ZMQPort, InsidePort: zmq})
		}
		for _, l := range links {
			if l.Port == rest || (proc.Generation == units.GenerationA && l.Port == zmq) {
				return nil, &config.FieldError{Field: "services." + l.Name, Value: l.Address, Rule: fmt.Sprintf("must not use port %d, which the processor listens on inside its namespace", l.Port)}
			}
			n.Links = append(n.Links, units.Link{Name: l.Name, Port: l.Port, Address: l.Address})
		}
		su.network = n
	}
	su.env = units.ProcessorEnv{
		Generation: proc.Generation,
		ID:         inst.ID,
		Name:       inst.Name,
		Settings:   inst.Parameters.Settings(),
		MongoURL:   mongo,
		Hostname:   "kato-" + inst.ID,
		RestPort:   rest,
		ZMQPort:    zmq,
	}
	if proc.Generation == units.GenerationC {
		su.env.MongoURL = ""
		su.env.ServiceName = proc.ServiceNameOf(inst)
		su.env.Workers = proc.Workers
		su.env.Stores = m.Config.Stores.Units()
	}
	if err := su.env.Validate(); err != nil {
		return nil, fmt.Errorf("render %s: %w", inst.Unit, err)
	}
	command := inst.Command
	if len(command) == 0 {
		command = proc.Command
	}
	if proc.Generation == units.GenerationC {
		// uvicorn takes its port and worker count on the command line, as
		// the image's CMD passes them.
		command = append(slices.Clip(command), "--port", strconv.Itoa(rest), "--workers", strconv.Itoa(proc.Workers))
	}
	su.dropIn = units.InstanceDropIn{
		ID:          inst.ID,
		Name:        inst.Name,
		Command:     command,
		Services:    m.Config.Services.Units,
		StopTimeout: config.Seconds(proc.StopTimeout),
		// Generation B never exits on SIGTERM, and generation A was seen
		// to hang on it under load: for both, the SIGKILL at the end of
		// stop_timeout ends a clean stop, not a failed one.
		// Generation C's exit after its graceful shutdown was never
		// measured, so its stop is bounded the same way.
		HangsOnSIGTERM: true,
		Network:        su.network,
		Limits:         units.Limits{MemoryMax: m.Config.Limits.InstanceMemoryMax, TasksMax: m.Config.Limits.InstanceTasksMax},
		Group:          inst.Group,
		ManagerUser:    m.Paths.User,
	}
	return su, nil
}

// renderedInstance is the files kato-manager writes for an instance and
// the digest of them that its drop-in passes to the processor.
type renderedInstance struct {
	env, dropIn []byte
	netDropIns  []units.UnitDropIn
	digest      string
}

// render renders the instance's files. The digest is SHA-256 over the
// environment file, the drop-in without its digest line and the
// private-network drop-ins: everything kato-manager decides about how the
// processor runs. A process whose environment holds another digest was
// started with other settings than the files say now.
func (su *instanceSetup) render() (*renderedInstance, error) {
	id := su.env.ID
	r := &renderedInstance{env: units.RenderEnvironment(su.env)}
	d := su.dropIn
	d.SettingsDigest = ""
	bare, err := units.RenderInstanceDropIn(d)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", units.InstanceUnit(id), err)
	}
	if su.network != nil {
		if r.netDropIns, err = units.RenderPrivateNetwork(*su.network); err != nil {
			return nil, fmt.Errorf("render the private network of %s: %w", id, err)
		}
	}
	h := sha256.New()
	for _, part := range [][]byte{r.env, bare} {
		fmt.Fprintf(h, "%d\n", len(part))
		h.Write(part)
	}
	for _, n := range r.netDropIns {
		fmt.Fprintf(h, "%s %d\n", n.Unit, len(n.Content))
		h.Write(n.Content)
	}
	r.digest = hex.EncodeToString(h.Sum(nil))
	d.SettingsDigest = r.digest
	if r.dropIn, err = units.RenderInstanceDropIn(d); err != nil {
		return nil, fmt.Errorf("render %s: %w", units.InstanceUnit(id), err)
	}
	return r, nil
}

// writeInstanceFiles renders the instance's environment file and drop-ins
// and removes drop-ins of private-network units it no longer has. It
// returns the units written, the instance's first.
func (m *Manager) writeInstanceFiles(su *instanceSetup) ([]string, error) {
	id := su.env.ID
	r, err := su.render()
	if err != nil {
		return nil, err
	}
	dropIn, netDropIns := r.dropIn, r.netDropIns
	// systemd reads the file as root; the processor gets its variables
	// from systemd. 0600 keeps credentials in MONGO_BASE_URL private.
	if _, err := writeFileAtomic(m.envPath(id), r.env, 0o600); err != nil {
		return nil, err
	}
	if _, err := writeFileAtomic(m.dropInPath(id), dropIn, 0o644); err != nil {
		return nil, err
	}
	if m.Paths.MakeStateDir {
		dir := filepath.Join(m.Paths.StateDir, id)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	written := []string{units.InstanceUnit(id)}
	keep := map[string]bool{}
	for _, d := range netDropIns {
		if _, err := writeFileAtomic(m.unitDropInPath(d.Unit), d.Content, 0o644); err != nil {
			return nil, err
		}
		keep[d.Unit] = true
		written = append(written, d.Unit)
	}
	for _, u := range m.networkUnitFiles(id) {
		if !keep[u] {
			if err := m.removeDropIn(u); err != nil {
				return nil, err
			}
		}
	}
	return written, nil
}

func (m *Manager) unitDropInPath(unit string) string {
	return filepath.Join(m.Paths.UnitDir, unit+".d", units.DropInName)
}

// networkUnitFiles lists the private-network units of id that have a drop-in.
func (m *Manager) networkUnitFiles(id string) []string {
	var out []string
	for _, g := range units.NetworkUnitGlobs(id) {
		dirs, _ := filepath.Glob(filepath.Join(m.Paths.UnitDir, g+".d", units.DropInName))
		for _, d := range dirs {
			out = append(out, strings.TrimSuffix(filepath.Base(filepath.Dir(d)), ".d"))
		}
	}
	sort.Strings(out)
	return out
}

func (m *Manager) removeDropIn(unit string) error {
	path := m.unitDropInPath(unit)
	if err := removeFile(path); err != nil {
		return err
	}
	if err := os.Remove(filepath.Dir(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove drop-in directory: %w", err)
	}
	return nil
}

// launch writes the instance's files, starts and enables its unit, and
// waits for the processor's health request.
func (m *Manager) launch(ctx context.Context, inst config.Instance, timeout time.Duration) error {
	su, err := m.setup(inst)
	if err != nil {
		return err
	}
	written, err := m.writeInstanceFiles(su)
	if err != nil {
		return err
	}
	// One look at each unit systemd has loaded says whether it must re-read
	// its files and whether it keeps a failed state or a restart counter,
	// which a start should not inherit. A unit not loaded has neither, and
	// reading its properties would load it: one listing finds the others.
	loaded, err := m.Systemd.ListUnits(ctx, written...)
	if err != nil {
		return err
	}
	var reload bool
	var failed []string
	for _, l := range loaded {
		if !slices.Contains(written, l.Name) {
			continue
		}
		name := l.Name
		u, err := m.Systemd.Unit(ctx, name)
		if err != nil {
			return err
		}
		reload = reload || needsReload(u)
		if u.ActiveState == "failed" || u.NRestarts > 0 {
			failed = append(failed, name)
		}
	}
	if reload {
		if err := m.Systemd.Reload(ctx); err != nil {
			return err
		}
	}
	for _, name := range failed {
		if err := m.Systemd.ResetFailedUnit(ctx, name); err != nil {
			return err
		}
	}
	if su.network == nil {
		// On the host network the processor binds the API port itself.
		pid, err := m.foreignHolder(ctx, inst.Unit, 0, su.readyPort)
		if err != nil {
			return err
		}
		if pid != 0 {
			return portHeldError(inst.Unit, su.readyPort, pid, "before the start")
		}
	}
	rep := m.waitReport(inst.Unit, readyTimeout(su, timeout))
	rep.report(WaitUnit, "", "systemd starts "+inst.Unit)
	if err := m.Systemd.StartUnit(ctx, inst.Unit); err != nil {
		return err
	}
	// The symlink in kato.target.wants brings the instance back at boot;
	// PartOf= makes `systemctl stop kato.target` reach it without one.
	// Nothing in the start needs it, so it is made while the processor
	// comes up; a failure fails the start, which is rolled back.
	enabled := make(chan error, 1)
	go func() { enabled <- m.Systemd.EnableUnits(ctx, []string{inst.Unit}) }()
	readyErr := m.waitReadyWatched(ctx, inst, su, 0, timeout, nil, rep)
	if err := <-enabled; err != nil && readyErr == nil {
		return err
	}
	if readyErr == nil {
		rep.report(WaitReady, "", "")
	}
	return readyErr
}

// reloadIfNeeded runs a daemon-reload only when one of the units needs it
// (see needsReload). A unit systemd has not loaded yet is read fresh,
// drop-in included, so a new instance needs none; a reload costs hundreds of
// milliseconds on a host with many units.
func (m *Manager) reloadIfNeeded(ctx context.Context, unitNames ...string) error {
	for _, name := range unitNames {
		u, err := m.Systemd.Unit(ctx, name)
		if err != nil {
			return err
		}
		if needsReload(u) {
			return m.Systemd.Reload(ctx)
		}
	}
	return nil
}

// needsReload says whether systemd must re-read u's files: it holds an
// older version than the disk, or holds the unit as broken (bad-setting:
// loaded by a daemon-reload while its drop-in was missing, which
// NeedDaemonReload does not report once the drop-in is back).
func needsReload(u UnitState) bool {
	return u.NeedDaemonReload || u.LoadState == "bad-setting" || u.LoadState == "error"
}

// waitReady polls until the processor's health request answers 200. It
// fails at once when the processor exits or is restarted by systemd (its
// restart count passes restartsBefore): a processor that dies before it
// answers will not get better by waiting. At the deadline it says what it
// saw: a processor listening but not answering, or not listening at all.
func (m *Manager) waitReady(ctx context.Context, inst config.Instance, su *instanceSetup, restartsBefore uint32, timeout time.Duration) error {
	return m.waitReadyWatched(ctx, inst, su, restartsBefore, timeout, nil, nil)
}

// waitReadyWatched is waitReady that, with watch set, looks at the unit's
// state through the batch's shared look (see unitWatch) between health
// requests, rather than asking systemd for the unit's properties each time.
// With rep set, it reports each step of the wait.
func (m *Manager) waitReadyWatched(ctx context.Context, inst config.Instance, su *instanceSetup, restartsBefore uint32, timeout time.Duration, watch *unitWatch, rep *waitReport) error {
	begin := time.Now()
	timeout = readyTimeout(su, timeout)
	interval := m.PollInterval
	if interval <= 0 {
		interval = 20 * time.Millisecond
	}
	if watch != nil && len(watch.names) > batchProbes {
		// The instances of a large batch share batchProbes health
		// requests per interval, so that their polling does not take the
		// CPUs their processors start on.
		interval = interval * time.Duration(len(watch.names)) / batchProbes
	}
	request := "GET " + su.proc.ReadyPath(inst.ID)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := "no answer yet"
	// On a private network the health request is made inside the
	// processor's namespace (see netns.go) while the manager can enter it
	// (as root); else through the host port, which starts the forwarder.
	inside := su.network != nil && m.Probe == nil
	var ns *netNamespace
	var nsPID int32 // the main process, known before its namespace
	defer func() { ns.Close() }()
	for {
		if inside && ns == nil {
			var err error
			ns, nsPID, err = m.instanceNamespace(ctx, inst.Unit)
			if err != nil && !errors.Is(err, errNoNamespace) {
				inside = false // not root: through the host port
			}
		}
		// The health request comes first: once it answers, the unit's
		// state need not be read again.
		var status int
		var err error
		switch {
		case ns != nil:
			status, err = probeVia(ctx, ns.client, su.listenPort, su.proc.ReadyPath(inst.ID), time.Until(deadline))
		case inside:
			err = errNoNamespace
		default:
			status, err = m.probe(ctx, su.readyPort, su.proc.ReadyPath(inst.ID), time.Until(deadline))
		}
		probeErr := err
		if err == nil && status == 200 {
			if u, ok := m.answeredByUnit(ctx, inst.Unit, restartsBefore); ok {
				if su.network != nil {
					// The host port is systemd's socket; answered
					// inside, the processor is ready once it listens.
					done, err := m.hostPortsListen(ctx, su.network, ns != nil)
					if done || err != nil {
						return err
					}
					probeErr = errors.New("the host port's socket is not listening yet")
				} else {
					// The answer counts only if the unit holds the port:
					// a process that bound it first answers too, while
					// the processor fails to bind and is restarted.
					pid, err := m.foreignHolder(ctx, inst.Unit, u.MainPID, su.readyPort)
					if err != nil {
						return err
					}
					if pid == 0 {
						return nil
					}
					return portHeldError(inst.Unit, su.readyPort, pid, "it answered the health request")
				}
			}
		}
		if probeErr != nil {
			last = probeErr.Error()
		} else {
			last = fmt.Sprintf("HTTP %d", status)
		}
		var u UnitState
		if watch != nil {
			u, err = watch.state(ctx, inst.Unit, begin)
			// A restart shows in a listing as the state it waits in;
			// the listing has no restart count.
			if err == nil && u.SubState == "auto-restart" {
				u.NRestarts = restartsBefore + 1
			}
		} else {
			u, err = m.Systemd.UnitRun(ctx, inst.Unit)
		}
		if err != nil {
			return err
		}
		switch {
		case u.ActiveState != "active":
			rep.report(WaitUnit, unitStateWord(u), "")
		case errors.Is(probeErr, syscall.ECONNREFUSED) || errors.Is(probeErr, errNoNamespace):
			rep.report(WaitListen, unitStateWord(u), fmt.Sprintf("port %d", su.readyPort))
		default:
			rep.report(WaitAnswer, unitStateWord(u), fmt.Sprintf("%s on port %d", request, su.readyPort))
		}
		switch {
		case u.ActiveState == "failed" || u.ActiveState == "inactive":
			return fmt.Errorf("%s exited (%s, result %s) before answering %s on port %d: %w", inst.Unit, u.ActiveState, u.Result, request, su.readyPort, ErrNotReady)
		case u.NRestarts > restartsBefore:
			return fmt.Errorf("%s exited and was restarted by systemd before answering %s on port %d: %w", inst.Unit, request, su.readyPort, ErrNotReady)
		}
		if time.Now().After(deadline) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			u, _ := m.Systemd.Unit(ctx, inst.Unit)
			if listening, _ := m.listensOn(ctx, u.MainPID, su.listenPort, su.network == nil); listening {
				return fmt.Errorf("%s listens on port %d but %s did not answer 200 within %s (last: %s): %w", inst.Unit, su.listenPort, request, timeout, last, ErrNotReady)
			}
			return fmt.Errorf("%s did not listen on port %d within %s (timed out): %w", inst.Unit, su.listenPort, timeout, ErrNotReady)
		}
		// One instance starting alone, whose port is still closed, is
		// watched more closely: a connect every portCheckInterval, which
		// is refused at once and costs next to nothing, sends the health
		// request as soon as the port opens rather than at the next tick.
		// A batch keeps to the ticks: fifty instances dialling that often
		// would keep a CPU busy.
		// So is its namespace: systemd makes it between the fork, which
		// ends the start job, and the exec. Until then one look at the
		// process's namespace every portCheckInterval, no D-Bus call.
		if watch == nil && inside && ns == nil && nsPID != 0 {
			if err := waitOwnNamespace(ctx, nsPID, tick.C); err != nil {
				return err
			}
			continue
		}
		if watch == nil && m.Probe == nil && errors.Is(probeErr, syscall.ECONNREFUSED) {
			dial := func(ctx context.Context) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(su.readyPort))
			}
			if ns != nil {
				dial = func(ctx context.Context) (net.Conn, error) { return ns.dial(ctx, su.listenPort) }
			}
			if err := waitPortOpen(ctx, dial, tick.C); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// hostPortsListen says whether the sockets of n's host ports listen. With
// insideProbed false the health request crossed them and nothing is asked.
// A socket that failed (its port held by another process) fails the start.
func (m *Manager) hostPortsListen(ctx context.Context, n *units.PrivateNetwork, insideProbed bool) (bool, error) {
	if !insideProbed {
		return true, nil
	}
	// One listing of the sockets, whose states are all this needs: a
	// read of each socket's properties makes systemd write all of them.
	names := make([]string, len(n.Inbound))
	for i, f := range n.Inbound {
		names[i] = units.ProxySocket(n.ID, f.Name)
	}
	list, err := m.Systemd.ListUnits(ctx, names...)
	if err != nil {
		return false, err
	}
	states := make(map[string]string, len(list))
	for _, u := range list {
		states[u.Name] = u.ActiveState
	}
	for i, f := range n.Inbound {
		switch states[names[i]] {
		case "active":
		case "failed":
			u, err := m.Systemd.Unit(ctx, names[i])
			if err != nil {
				return false, err
			}
			return false, fmt.Errorf("%s failed (result %s): host port %d is not forwarded to the processor; is another process listening on it? %w", names[i], u.Result, f.HostPort, ErrNotReady)
		default:
			return false, nil
		}
	}
	return true, nil
}

// batchProbes is how many health requests per poll interval the waiting
// instances of a batch make together.
const batchProbes = 32

// answeredByUnit says whether the unit whose processor just answered is
// active and has not been restarted since restartsBefore.
func (m *Manager) answeredByUnit(ctx context.Context, unit string, restartsBefore uint32) (UnitState, bool) {
	u, err := m.Systemd.UnitRun(ctx, unit)
	return u, err == nil && u.ActiveState == "active" && u.NRestarts <= restartsBefore
}

// waitOwnNamespace returns once process pid is no longer in the manager's
// network namespace (systemd moved it into its own) or tick fires,
// whichever comes first.
func waitOwnNamespace(ctx context.Context, pid int32, tick <-chan time.Time) error {
	check := time.NewTicker(portCheckInterval)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			return nil
		case <-check.C:
			switch same, err := sameNetNamespace(pid); {
			case err != nil:
				// Gone: the next look at the unit, at the tick,
				// says more.
				check.Stop()
			case !same:
				return nil
			}
		}
	}
}

// portCheckInterval is how often waitPortOpen tries the port.
const portCheckInterval = 2 * time.Millisecond

// waitPortOpen returns once a connection made by dial is accepted or tick
// fires, whichever comes first.
func waitPortOpen(ctx context.Context, dial func(context.Context) (net.Conn, error), tick <-chan time.Time) error {
	check := time.NewTicker(portCheckInterval)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			return nil
		case <-check.C:
			dctx, cancel := context.WithTimeout(ctx, portCheckInterval)
			conn, err := dial(dctx)
			cancel()
			if err == nil {
				conn.Close()
				return nil
			}
		}
	}
}

// probeTimeout bounds one health request: a generation-A gateway without its
// engine holds a request for 17 seconds before it fails.
const probeTimeout = 2 * time.Second

// probe makes one health request, within limit and probeTimeout.
func (m *Manager) probe(ctx context.Context, port int, path string, limit time.Duration) (int, error) {
	if limit > probeTimeout || limit <= 0 {
		limit = probeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if m.Probe != nil {
		return m.Probe(ctx, port, path)
	}
	return httpProbe(ctx, port, path)
}

// probeVia is probe through client, within limit and probeTimeout.
func probeVia(ctx context.Context, client *http.Client, port int, path string, limit time.Duration) (int, error) {
	if limit > probeTimeout || limit <= 0 {
		limit = probeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	status, unhealthy, err := healthVia(ctx, client, port, path)
	if unhealthy {
		return http.StatusServiceUnavailable, nil
	}
	return status, err
}

// httpProbe is GET path on 127.0.0.1:port with a fresh connection, so that a
// proxy in front of the processor is crossed each time. Generation C's
// /health answers 200 when it is unhealthy too; only its body tells: that
// answer counts as HTTP 503.
func httpProbe(ctx context.Context, port int, path string) (int, error) {
	status, unhealthy, err := httpHealth(ctx, port, path)
	if unhealthy {
		return http.StatusServiceUnavailable, nil
	}
	return status, err
}

// httpHealth is httpProbe that says whether a 200 answer's body said
// "unhealthy".
func httpHealth(ctx context.Context, port int, path string) (status int, unhealthy bool, err error) {
	return healthVia(ctx, probeClient, port, path)
}

// healthVia is httpHealth through client.
func healthVia(ctx context.Context, client *http.Client, port int, path string) (status int, unhealthy bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	if err != nil {
		return 0, false, err
	}
	req.Close = true
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, false, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, resp.StatusCode == http.StatusOK && reportsUnhealthy(body), nil
}

// reportsUnhealthy says whether a health answer's body is a JSON object
// whose "status" is "unhealthy", as generation C's /health says it.
func reportsUnhealthy(body []byte) bool {
	var health struct {
		Status string `json:"status"`
	}
	return json.Unmarshal(body, &health) == nil && health.Status == "unhealthy"
}

var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// listensOn reports whether the unit's main process listens on port. With
// hostWide it also accepts any listener on the host, for a processor whose
// main process is a wrapper and a child holds the socket; that look is
// costly, so waitReady makes it only now and then.
func (m *Manager) listensOn(ctx context.Context, mainPID uint32, port int, hostWide bool) (bool, error) {
	if mainPID != 0 {
		ports, err := m.Ports.ListeningBy(ctx, int32(mainPID))
		if err == nil && ports[port] {
			return true, nil
		}
	}
	if !hostWide {
		return false, nil
	}
	return m.Ports.InUse(ctx, port)
}

// teardown stops an instance's unit and removes everything kato-manager
// made for it on the host, leaving its state directory (learned memory)
// alone. Each step tolerates an earlier, interrupted teardown.
func (m *Manager) teardown(ctx context.Context, id string) error {
	unit := units.InstanceUnit(id)
	var errs []error
	if err := m.Systemd.StopUnit(ctx, unit); err != nil && !errors.Is(err, ErrNoSuchUnit) {
		errs = append(errs, err)
	}
	// The private-network units are part of the instance's unit, so they
	// stopped with it; stop them by name too, in case one outlived it, and
	// remove their drop-ins.
	netUnits := map[string]bool{}
	for _, u := range m.networkUnitFiles(id) {
		netUnits[u] = true
	}
	if loaded, err := m.Systemd.ListUnits(ctx, units.NetworkUnitGlobs(id)...); err == nil {
		for _, u := range loaded {
			if units.IsNetworkUnitOf(u.Name, id) {
				netUnits[u.Name] = true
			}
		}
	} else {
		errs = append(errs, err)
	}
	for _, u := range sortedKeys(netUnits) {
		if err := m.Systemd.StopUnit(ctx, u); err != nil && !errors.Is(err, ErrNoSuchUnit) {
			errs = append(errs, err)
		}
		if err := m.removeDropIn(u); err != nil {
			errs = append(errs, err)
		}
		if err := m.Systemd.ResetFailedUnit(ctx, u); err != nil && !errors.Is(err, ErrNoSuchUnit) {
			errs = append(errs, err)
		}
	}
	if err := m.Systemd.DisableUnits(ctx, []string{unit}); err != nil && !errors.Is(err, ErrNoSuchUnit) {
		errs = append(errs, err)
	}
	for _, path := range []string{m.dropInPath(id), m.envPath(id)} {
		if err := removeFile(path); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(filepath.Dir(m.dropInPath(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove drop-in directory: %w", err))
	}
	// No daemon-reload: systemd forgets the stopped unit by itself, and a
	// later start of the same ID finds NeedDaemonReload set if systemd
	// still holds the old files.
	if err := m.Systemd.ResetFailedUnit(ctx, unit); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (m *Manager) rollback(ctx context.Context, inst config.Instance, created bool) error {
	if !created {
		// The instance existed before this start: leave it registered and
		// configured, only stopped.
		return m.Systemd.StopUnit(ctx, inst.Unit)
	}
	err := m.teardown(ctx, inst.ID)
	return errors.Join(err, m.Registry.Update(func(r *config.Registry) error {
		delete(r.Instances, inst.ID)
		return nil
	}))
}

// StopResult names the instances a stop removed.
type StopResult struct {
	Stopped  []string // instance IDs
	Services []string // shared service units stopped
}

// Stop stops the instance with this ID or name and removes its unit files,
// its registry entry and any failed state. A unit kato-manager made whose
// registry entry is gone is stopped by its ID too.
func (m *Manager) Stop(ctx context.Context, ref string) (*StopResult, error) {
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	inst, findErr := reg.Find(ref)
	id := ref
	var stopTimeout time.Duration
	if findErr == nil {
		id = inst.ID
		if p, err := m.Config.ProcessorNamed(inst.Processor); err == nil {
			stopTimeout = config.Seconds(p.StopTimeout)
		}
	} else if !errors.Is(findErr, config.ErrNotFound) || !m.hasUnitFiles(ref) {
		return nil, findErr
	}
	unit := units.InstanceUnit(id)
	// Out of its front first: its requests in flight finish, no new one
	// comes to it.
	if err := m.drainMembers(ctx, []string{id}); err != nil {
		return nil, err
	}
	rep := m.waitReport(unit, stopTimeout)
	rep.report(WaitStop, "", "systemd stops "+unit)
	unwatch := m.watchStop(ctx, rep, unit, stopWatchInterval)
	err = m.remove(ctx, id)
	unwatch()
	if err != nil {
		return nil, err
	}
	rep.report(WaitStopped, "", "")
	if err := m.syncGroups(ctx); err != nil {
		return nil, err
	}
	if err := m.syncFronts(ctx, nil); err != nil {
		return nil, err
	}
	return &StopResult{Stopped: []string{id}}, nil
}

// stopWatchInterval is how often a single stop looks at its unit's state:
// seldom, as most stops end sooner.
const stopWatchInterval = 250 * time.Millisecond

func (m *Manager) remove(ctx context.Context, id string) error {
	if err := m.teardown(ctx, id); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return m.Registry.Update(func(r *config.Registry) error {
		delete(r.Instances, id)
		return nil
	})
}

// StopAll stops every instance, registered or orphaned, and, when
// withServices is set, the shared service units as well.
func (m *Manager) StopAll(ctx context.Context, withServices bool) (*StopResult, error) {
	reg, release, err := m.lockedRegistry(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	ids := map[string]bool{}
	for id := range reg.Instances {
		ids[id] = true
	}
	orphans, err := m.orphanIDs(ctx, reg)
	if err != nil {
		return nil, err
	}
	for _, id := range orphans {
		ids[id] = true
	}
	res := &StopResult{}
	var errs []error
	// The stops run side by side, as many as a batch starts at once: a
	// processor that ignores SIGTERM takes its whole stop_timeout.
	all := sortedKeys(ids)
	out := m.removeMany(ctx, all, m.parallel(0))
	for _, id := range all {
		if err := out[id]; err != nil {
			errs = append(errs, err)
			continue
		}
		res.Stopped = append(res.Stopped, id)
	}
	if err := m.syncGroups(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := m.syncFronts(ctx, nil); err != nil {
		errs = append(errs, err)
	}
	if withServices {
		for _, s := range m.Config.Services.Units {
			if err := m.Systemd.StopUnit(ctx, s); err != nil && !errors.Is(err, ErrNoSuchUnit) {
				errs = append(errs, err)
				continue
			}
			res.Services = append(res.Services, s)
		}
	}
	return res, errors.Join(errs...)
}

// Restart restarts an instance with its ID, ports and settings, picking up
// changes to the global configuration, and waits for its API port. Learned
// memory is kept.
func (m *Manager) Restart(ctx context.Context, ref string, timeout time.Duration) (*config.Instance, error) {
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if inst, g, ok, err := m.runningFrontOf(ctx, ref); err != nil {
		return nil, err
	} else if ok {
		// A member of a running front: out of the rotation while it
		// restarts, back once the front sees it up.
		g.Members = slices.DeleteFunc(g.Members, func(mb front.Member) bool { return mb.ID != inst.ID })
		ro := front.RollOptions{DrainTimeout: frontDrainTimeout, ReadyTimeout: 4*FrontCheckInterval + 10*time.Second}
		if _, err := front.Roll(ctx, g, m.frontAdmin(g.Name), memberRestarter{m: m, timeout: timeout, locked: true}, ro); err != nil {
			var re *front.RollError
			if errors.As(err, &re) {
				return nil, re.Err
			}
			return nil, err
		}
		return inst, nil
	}
	return m.restartLocked(ctx, ref, timeout)
}

// restartLocked is Restart for a caller holding the operations lock.
func (m *Manager) restartLocked(ctx context.Context, ref string, timeout time.Duration) (*config.Instance, error) {
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	inst, err := reg.Find(ref)
	if err != nil {
		return nil, err
	}
	su, err := m.setup(*inst)
	if err != nil {
		return nil, err
	}
	written, err := m.writeInstanceFiles(su)
	if err != nil {
		return nil, err
	}
	if err := m.reloadIfNeeded(ctx, written...); err != nil {
		return nil, err
	}
	u, err := m.Systemd.Unit(ctx, inst.Unit)
	if err != nil {
		return nil, err
	}
	if u.ActiveState == "failed" {
		if err := m.Systemd.ResetFailedUnit(ctx, inst.Unit); err != nil {
			return nil, err
		}
		u.NRestarts = 0
	}
	rep := m.waitReport(inst.Unit, readyTimeout(su, timeout))
	rep.report(WaitUnit, "", "systemd restarts "+inst.Unit)
	if err := m.Systemd.RestartUnit(ctx, inst.Unit); err != nil {
		return nil, m.startError(ctx, inst.Unit, err)
	}
	if err := m.waitReadyWatched(ctx, *inst, su, u.NRestarts, timeout, nil, rep); err != nil {
		return nil, m.startError(ctx, inst.Unit, err)
	}
	rep.report(WaitReady, "", "")
	err = m.Registry.Update(func(r *config.Registry) error {
		if e, ok := r.Instances[inst.ID]; ok {
			e.Updated = m.now().UTC().Truncate(time.Second)
		}
		return nil
	})
	return inst, err
}

// startError wraps a failed start or restart with the unit's last log
// lines.
func (m *Manager) startError(ctx context.Context, unit string, err error) *StartError {
	se := &StartError{Unit: unit, Err: err}
	if m.Journal != nil {
		se.Journal, _ = m.Journal.Tail(ctx, unit, 20)
	}
	return se
}

// hasUnitFiles reports whether kato-manager's files for id exist.
func (m *Manager) hasUnitFiles(id string) bool { return m.Paths.HasInstanceFiles(id) }

// orphanIDs lists instances that systemd or the unit directory knows and
// the registry does not.
func (m *Manager) orphanIDs(ctx context.Context, reg *config.Registry) ([]string, error) {
	list, err := m.Systemd.ListUnits(ctx, units.InstancePattern)
	if err != nil {
		return nil, err
	}
	return m.orphansIn(reg, list), nil
}

// orphansIn is orphanIDs with the instance units already listed.
func (m *Manager) orphansIn(reg *config.Registry, list []UnitState) []string {
	return m.orphansWith(reg, list, m.readInstanceFiles())
}

// orphansWith is orphansIn with the instances' files already read.
func (m *Manager) orphansWith(reg *config.Registry, list []UnitState, files instanceFiles) []string {
	found := map[string]bool{}
	for _, u := range list {
		// An inactive unit with no files is only systemd's memory of it,
		// which systemd collects by itself.
		if id, ok := units.InstanceID(u.Name); ok && u.ActiveState != "inactive" {
			found[id] = true
		}
	}
	for _, set := range []map[string]bool{files.dropIns, files.networkDropIns, files.envs} {
		for id := range set {
			found[id] = true
		}
	}
	var out []string
	for id := range found {
		if _, ok := reg.Instances[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// instanceFiles are the ids that have files kato-manager writes: an
// instance's drop-in, a private-network unit's drop-in (which may outlive
// its instance's files) or an environment file.
type instanceFiles struct {
	dropIns, networkDropIns, envs map[string]bool
}

// has says whether the instance id has its drop-in or its environment file.
func (f instanceFiles) has(id string) bool { return f.dropIns[id] || f.envs[id] }

// readInstanceFiles reads the unit directory and the environment directory
// once each (a look per instance was a third of a status of 1,000); only
// the drop-in files themselves are looked for one by one.
func (m *Manager) readInstanceFiles() instanceFiles {
	f := instanceFiles{dropIns: map[string]bool{}, networkDropIns: map[string]bool{}, envs: map[string]bool{}}
	dirPatterns := []struct {
		pattern string
		id      func(string) (string, bool)
		into    map[string]bool
	}{{units.InstancePattern + ".d", units.InstanceID, f.dropIns}}
	for _, pattern := range units.NetworkPatterns() {
		dirPatterns = append(dirPatterns, struct {
			pattern string
			id      func(string) (string, bool)
			into    map[string]bool
		}{pattern + ".d", units.NetworkUnitID, f.networkDropIns})
	}
	entries, _ := os.ReadDir(m.Paths.UnitDir)
	for _, e := range entries {
		name := e.Name()
		for _, d := range dirPatterns {
			if ok, _ := filepath.Match(d.pattern, name); !ok {
				continue
			}
			id, ok := d.id(strings.TrimSuffix(name, ".d"))
			if !ok {
				continue
			}
			if _, err := os.Lstat(filepath.Join(m.Paths.UnitDir, name, units.DropInName)); err == nil {
				d.into[id] = true
			}
		}
	}
	envs, _ := os.ReadDir(m.Paths.EnvDir)
	for _, e := range envs {
		if id, ok := strings.CutSuffix(e.Name(), ".env"); ok && config.ValidateID(id) == nil {
			f.envs[id] = true
		}
	}
	return f
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
