package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/config"
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
	// Hostname is passed to processors as HOSTNAME; empty means os.Hostname.
	Hostname string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RunTool runs a host tool (systemd-sysusers, systemd-tmpfiles) when
	// units are installed; nil means exec it.
	RunTool func(ctx context.Context, argv ...string) error
	// PollInterval is how often readiness is checked; zero means 100ms.
	PollInterval time.Duration
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

// ErrNotReady is returned when a processor does not listen on its API port
// in time, or exits before it does.
var ErrNotReady = errors.New("processor not ready")

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
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := m.EnsureUnits(ctx); err != nil {
		return nil, err
	}
	res := &StartResult{}
	var created bool
	err = m.Registry.Update(func(r *config.Registry) error {
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
		return nil, se
	}
	return res, nil
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
		if p.value != 0 && (p.value < 1 || p.value > 65535) {
			return &config.FieldError{Field: p.field, Value: fmt.Sprint(p.value), Rule: "must be between 1 and 65535"}
		}
	}
	if len(req.Command) > 0 && !filepath.IsAbs(req.Command[0]) {
		return &config.FieldError{Field: "processor_command", Value: strings.Join(req.Command, " "), Rule: "the executable must be an absolute path"}
	}
	return nil
}

// newInstance builds a registry entry with ports that no registered
// instance reserves and no process listens on. It runs under the registry
// lock, so concurrent starts never get the same port.
func (m *Manager) newInstance(ctx context.Context, r *config.Registry, req StartRequest) (config.Instance, []string, error) {
	listening, err := m.Ports.Listening(ctx)
	if err != nil {
		return config.Instance{}, nil, err
	}
	reserved := r.ReservedPorts()
	taken := func(p int) bool {
		_, res := reserved[p]
		_, lis := listening[p]
		return res || lis
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
	zmq, err := pick("ZMQ", req.ZMQPort, ports.ZMQStart, ports.ZMQEnd)
	if err != nil {
		return config.Instance{}, nil, err
	}
	name := req.Name
	if name == "" {
		name = "KatoProcessor"
	}
	now := m.now().UTC().Truncate(time.Second)
	return config.Instance{
		ID:         req.ID,
		Name:       name,
		Unit:       units.InstanceUnit(req.ID),
		APIPort:    api,
		ZMQPort:    zmq,
		Command:    req.Command,
		Parameters: req.Parameters,
		Created:    now,
		Updated:    now,
	}, notices, nil
}

// writeInstanceFiles renders the instance's environment file and drop-in
// from the registry entry and the global configuration.
func (m *Manager) writeInstanceFiles(inst config.Instance) error {
	host := m.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	p := inst.Parameters
	penv := units.ProcessorEnv{
		ID:               inst.ID,
		Name:             inst.Name,
		IndexerType:      p.IndexerType,
		MaxPredictions:   p.MaxPredictions,
		RecallThreshold:  p.RecallThreshold,
		MaxPatternLength: p.MaxSeqLength,
		Persistence:      p.Persistence,
		Quiescence:       p.Quiescence,
		LogLevel:         m.Config.Processor.LogLevel,
		MongoURL:         m.Config.Services.MongoURL,
		Hostname:         host,
		RestPort:         inst.APIPort,
		ZMQPort:          inst.ZMQPort,
	}
	if err := penv.Validate(); err != nil {
		return fmt.Errorf("render %s: %w", inst.Unit, err)
	}
	command := inst.Command
	if len(command) == 0 {
		command = m.Config.Processor.Command
	}
	dropIn, err := units.RenderInstanceDropIn(units.InstanceDropIn{
		ID:       inst.ID,
		Name:     inst.Name,
		Command:  command,
		Services: m.Config.Services.Units,
		Limits:   units.Limits{MemoryMax: m.Config.Limits.InstanceMemoryMax, TasksMax: m.Config.Limits.InstanceTasksMax},
	})
	if err != nil {
		return fmt.Errorf("render %s: %w", inst.Unit, err)
	}
	// systemd reads the file as root; the processor gets its variables
	// from systemd. 0600 keeps credentials in MONGO_BASE_URL private.
	if _, err := writeFileAtomic(m.envPath(inst.ID), units.RenderEnvironment(penv), 0o600); err != nil {
		return err
	}
	if _, err := writeFileAtomic(m.dropInPath(inst.ID), dropIn, 0o644); err != nil {
		return err
	}
	if m.Paths.MakeStateDir {
		dir := filepath.Join(m.Paths.StateDir, inst.ID)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return nil
}

// launch writes the instance's files, enables and starts its unit, and
// waits for the processor's API port.
func (m *Manager) launch(ctx context.Context, inst config.Instance, timeout time.Duration) error {
	if err := m.writeInstanceFiles(inst); err != nil {
		return err
	}
	// The symlink in kato.target.wants brings the instance back at boot;
	// PartOf= makes `systemctl stop kato.target` reach it without one.
	if err := m.Systemd.EnableUnits(ctx, []string{inst.Unit}); err != nil {
		return err
	}
	if err := m.reloadIfNeeded(ctx, inst.Unit); err != nil {
		return err
	}
	// A failed unit keeps its restart counter; start from a clean slate.
	if err := m.Systemd.ResetFailedUnit(ctx, inst.Unit); err != nil {
		return err
	}
	if err := m.Systemd.StartUnit(ctx, inst.Unit); err != nil {
		return err
	}
	return m.waitReady(ctx, inst, 0, timeout)
}

// reloadIfNeeded runs a daemon-reload only when systemd holds an older
// version of the unit's files than the disk, or holds the unit as broken
// (bad-setting: loaded by a daemon-reload while its drop-in was missing,
// which NeedDaemonReload does not report once the drop-in is back). A unit
// systemd has not loaded yet is read fresh, drop-in included, so a new
// instance needs none; a reload costs hundreds of milliseconds on a host
// with many units.
func (m *Manager) reloadIfNeeded(ctx context.Context, unit string) error {
	u, err := m.Systemd.Unit(ctx, unit)
	if err != nil {
		return err
	}
	if !u.NeedDaemonReload && u.LoadState != "bad-setting" && u.LoadState != "error" {
		return nil
	}
	return m.Systemd.Reload(ctx)
}

// waitReady polls until the unit's processor listens on its API port. It
// fails at once when the processor exits or is restarted by systemd (its
// restart count passes restartsBefore): a processor that dies before it
// listens will not get better by waiting.
func (m *Manager) waitReady(ctx context.Context, inst config.Instance, restartsBefore uint32, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = time.Duration(m.Config.Processor.ReadyTimeout * float64(time.Second))
	}
	interval := m.PollInterval
	if interval <= 0 {
		interval = 20 * time.Millisecond
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for poll := 0; ; poll++ {
		u, err := m.Systemd.Unit(ctx, inst.Unit)
		if err != nil {
			return err
		}
		switch {
		case u.ActiveState == "failed" || u.ActiveState == "inactive":
			return fmt.Errorf("%s %s (result %s) before listening on port %d: %w", inst.Unit, u.ActiveState, u.Result, inst.APIPort, ErrNotReady)
		case u.NRestarts > restartsBefore:
			return fmt.Errorf("%s exited and was restarted by systemd before listening on port %d: %w", inst.Unit, inst.APIPort, ErrNotReady)
		case u.ActiveState == "active":
			ready, err := m.listensOn(ctx, u.MainPID, inst.APIPort, poll%10 == 9)
			if err != nil || ready {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s did not listen on port %d within %s: %w", inst.Unit, inst.APIPort, timeout, ErrNotReady)
		case <-tick.C:
		}
	}
}

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
	listening, err := m.Ports.Listening(ctx)
	if err != nil {
		return false, err
	}
	_, ok := listening[port]
	return ok, nil
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
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	inst, findErr := reg.Find(ref)
	id := ref
	if findErr == nil {
		id = inst.ID
	} else if !errors.Is(findErr, config.ErrNotFound) || !m.hasUnitFiles(ref) {
		return nil, findErr
	}
	if err := m.remove(ctx, id); err != nil {
		return nil, err
	}
	return &StopResult{Stopped: []string{id}}, nil
}

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
	release, err := m.Registry.LockOperations(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
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
	for _, id := range sortedKeys(ids) {
		if err := m.remove(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Stopped = append(res.Stopped, id)
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
	reg, err := m.Registry.Load()
	if err != nil {
		return nil, err
	}
	inst, err := reg.Find(ref)
	if err != nil {
		return nil, err
	}
	if err := m.writeInstanceFiles(*inst); err != nil {
		return nil, err
	}
	if err := m.reloadIfNeeded(ctx, inst.Unit); err != nil {
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
	if err := m.Systemd.RestartUnit(ctx, inst.Unit); err != nil {
		return nil, m.startError(ctx, inst.Unit, err)
	}
	if err := m.waitReady(ctx, *inst, u.NRestarts, timeout); err != nil {
		return nil, m.startError(ctx, inst.Unit, err)
	}
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
	found := map[string]bool{}
	list, err := m.Systemd.ListUnits(ctx, units.InstancePattern)
	if err != nil {
		return nil, err
	}
	for _, u := range list {
		// An inactive unit with no files is only systemd's memory of it,
		// which systemd collects by itself.
		if id, ok := units.InstanceID(u.Name); ok && u.ActiveState != "inactive" {
			found[id] = true
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(m.Paths.UnitDir, "kato@*.service.d", units.DropInName))
	for _, d := range dirs {
		if id, ok := units.InstanceID(strings.TrimSuffix(filepath.Base(filepath.Dir(d)), ".d")); ok {
			found[id] = true
		}
	}
	envs, _ := filepath.Glob(filepath.Join(m.Paths.EnvDir, "*.env"))
	for _, e := range envs {
		id := strings.TrimSuffix(filepath.Base(e), ".env")
		if config.ValidateID(id) == nil {
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
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
