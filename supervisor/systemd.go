// Package supervisor owns the running side of kato-manager: it drives KATO
// instances and KG workers as systemd units over D-Bus, allocates and checks
// ports, reads health from systemd and /proc, and keeps the registry and the
// units in step.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Systemd is the part of systemd's D-Bus API that the supervisor uses. The
// production implementation is DBus; unit tests use an in-memory fake.
type Systemd interface {
	// StartUnit starts a unit and waits for its job to finish.
	StartUnit(ctx context.Context, name string) error
	// StopUnit stops a unit and waits for its job to finish.
	StopUnit(ctx context.Context, name string) error
	// RestartUnit restarts a unit and waits for its job to finish.
	RestartUnit(ctx context.Context, name string) error
	// ReloadUnit reloads a running unit (its ExecReload=) and waits for
	// its job to finish.
	ReloadUnit(ctx context.Context, name string) error
	// ResetFailedUnit clears a unit's failed state and restart counter.
	ResetFailedUnit(ctx context.Context, name string) error
	// EnableUnits makes units start with the targets that want them.
	EnableUnits(ctx context.Context, names []string) error
	// DisableUnits undoes EnableUnits.
	DisableUnits(ctx context.Context, names []string) error
	// Reload makes systemd re-read unit files (daemon-reload).
	Reload(ctx context.Context) error
	// ListUnits returns the loaded units matching any of the glob patterns,
	// in one call.
	ListUnits(ctx context.Context, patterns ...string) ([]UnitState, error)
	// Unit returns the state of one unit, loading it if needed.
	Unit(ctx context.Context, name string) (UnitState, error)
	// ServiceProperties reads five properties of one unit's Service
	// interface (MainPID, NRestarts, Result, ExecMainStartTimestamp,
	// ControlGroup), asked for at once. ServiceCache calls it when a unit first
	// appears or systemd signals that it changed, never per scrape.
	ServiceProperties(ctx context.Context, name string) (UnitState, error)
	// UnitRun reads what a wait for a starting unit looks at: its
	// ActiveState, SubState, Result, NRestarts and MainPID, five
	// properties asked for at once, far less for systemd to write than Unit's. A unit not
	// loaded is loaded.
	UnitRun(ctx context.Context, name string) (UnitState, error)
	// WatchUnits subscribes to systemd's signals of changed units and
	// calls changed with the name of each unit whose Service properties
	// changed or that was loaded or unloaded, until ctx ends or the
	// connection is lost. It returns once the subscription is in place;
	// done then yields nil when ctx ended and an error when the watch was
	// lost.
	WatchUnits(ctx context.Context, changed func(unit string)) (done <-chan error, err error)
	// UnitFileExists reports whether systemd knows a unit file by that name.
	UnitFileExists(ctx context.Context, name string) (bool, error)
	// Version returns systemd's version string.
	Version(ctx context.Context) (string, error)
}

// UnitState is what the supervisor reads about one unit. ListUnits fills
// the names and states only; Unit fills every field.
type UnitState struct {
	Name             string
	LoadState        string // loaded, not-found, bad-setting, …
	ActiveState      string // active, inactive, failed, activating, deactivating
	SubState         string // running, dead, auto-restart, …
	Result           string // success, exit-code, timeout, watchdog, start-limit-hit, …
	MainPID          uint32
	NRestarts        uint32
	ActiveSince      time.Time
	NeedDaemonReload bool
	// UnitFileState is enabled, disabled, static, linked, …: whether the
	// unit comes back at boot.
	UnitFileState string
	// StartLimitBurst is the unit's StartLimitBurst=.
	StartLimitBurst uint32
	// ControlGroup is the unit's cgroup, relative to the cgroup2 mount
	// (/system.slice/system-kato.slice/kato@a.service); empty while the
	// unit has no processes. ListUnits leaves it out.
	ControlGroup string
}

// StartLimitHit reports whether systemd gave up starting the unit because
// it was started too often (StartLimitBurst= within StartLimitIntervalSec=);
// it stays so until reset-failed. A start refused by the limit has the
// result start-limit-hit; an automatic restart refused by it leaves the
// result of the last failure (systemd 252), and shows as a failed unit
// whose restarts reached the burst: with Restart=on-failure nothing else
// leaves a failed unit without a restart.
func (u UnitState) StartLimitHit() bool {
	if u.ActiveState != "failed" {
		return false
	}
	return u.Result == "start-limit-hit" || u.StartLimitBurst > 0 && u.NRestarts >= u.StartLimitBurst
}

// Active reports whether the unit is up or on its way up.
func (u UnitState) Active() bool {
	return u.ActiveState == "active" || u.ActiveState == "activating" || u.ActiveState == "reloading"
}

// ErrJobFailed is returned when a start, stop or restart job does not end
// with the result "done".
var ErrJobFailed = errors.New("systemd job failed")

// Sentinel errors for the D-Bus errors systemd answers with, so that callers
// branch with errors.Is on what systemd meant, never on message text. The
// error returned keeps systemd's own name and message.
var (
	// ErrNoSuchUnit is org.freedesktop.systemd1.NoSuchUnit: systemd has no
	// unit (or unit file) by that name, or the unit is not loaded.
	ErrNoSuchUnit = errors.New("no such unit")
	// ErrUnitMasked is org.freedesktop.systemd1.UnitMasked.
	ErrUnitMasked = errors.New("unit masked")
	// ErrLoadFailed is org.freedesktop.systemd1.LoadFailed or BadUnitSetting:
	// the unit's files do not load.
	ErrLoadFailed = errors.New("unit failed to load")
	// ErrAccessDenied is org.freedesktop.DBus.Error.AccessDenied or
	// InteractiveAuthorizationRequired: the caller may not do this.
	ErrAccessDenied = errors.New("access denied by systemd")
)

// dbusSentinels maps the D-Bus error names systemd uses to the sentinels.
var dbusSentinels = map[string]error{
	"org.freedesktop.systemd1.NoSuchUnit":                         ErrNoSuchUnit,
	"org.freedesktop.systemd1.UnitMasked":                         ErrUnitMasked,
	"org.freedesktop.systemd1.LoadFailed":                         ErrLoadFailed,
	"org.freedesktop.systemd1.BadUnitSetting":                     ErrLoadFailed,
	"org.freedesktop.DBus.Error.AccessDenied":                     ErrAccessDenied,
	"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": ErrAccessDenied,
}

// BusError is an error systemd answered a D-Bus call with: its D-Bus name,
// its message and, when the name is one the supervisor branches on, the
// sentinel it stands for.
type BusError struct {
	Name     string
	Message  string
	sentinel error
}

func (e *BusError) Error() string {
	if e.Message == "" {
		return e.Name
	}
	return e.Message + " (" + e.Name + ")"
}

// Is matches the sentinel the D-Bus name maps to.
func (e *BusError) Is(target error) bool { return e.sentinel != nil && target == e.sentinel }

// classify turns a godbus error into a *BusError; other errors pass as they
// are.
func classify(err error) error {
	var de dbus.Error
	if !errors.As(err, &de) {
		var dp *dbus.Error
		if !errors.As(err, &dp) || dp == nil {
			return err
		}
		de = *dp
	}
	be := &BusError{Name: de.Name, sentinel: dbusSentinels[de.Name]}
	if len(de.Body) > 0 {
		be.Message, _ = de.Body[0].(string)
	}
	return be
}

// DBus is the Systemd implementation that talks to the system manager, or
// a user's manager, over D-Bus.
type DBus struct {
	conn *sddbus.Conn
	// dial opens another connection to the same manager, for WatchUnits,
	// and says whether it is a direct one (no bus in between); nil when
	// the connection was handed over (NewDBus).
	dial func(ctx context.Context) (*dbus.Conn, bool, error)
	// jobs waits for the jobs the calls queue, from the signals of the
	// connection; nil leaves that to go-systemd (see jobWaiter).
	jobs *jobWaiter
}

// signalsOf wraps a dialer for sddbus.NewConnection so that *last holds
// the connection dialed last, the one go-systemd reads signals from.
func signalsOf(dial func() (*dbus.Conn, error), last **dbus.Conn) func() (*dbus.Conn, error) {
	return func() (*dbus.Conn, error) {
		c, err := dial()
		if err == nil {
			*last = c
		}
		return c, err
	}
}

// withJobs returns d waiting for its jobs itself, on the signals of sig.
func (d *DBus) withJobs(sig *dbus.Conn) *DBus {
	if sig != nil {
		d.jobs = newJobWaiter()
		d.jobs.watch(sig)
	}
	return d
}

// Connect opens a D-Bus connection to the system manager or, with user, to
// the invoking user's manager. For the user's manager it does what
// `systemctl --user` does: the manager's own socket
// $XDG_RUNTIME_DIR/systemd/private first, which needs no session bus, and
// else the session bus (DBUS_SESSION_BUS_ADDRESS, or $XDG_RUNTIME_DIR/bus).
func Connect(ctx context.Context, user bool) (*DBus, error) {
	var sig *dbus.Conn
	if user {
		conn, err := sddbus.NewConnection(signalsOf(func() (*dbus.Conn, error) {
			conn, _, err := dialUser(ctx)
			return conn, err
		}, &sig))
		if err != nil {
			return nil, fmt.Errorf("connect to your systemd user manager over D-Bus: %w (does `systemctl --user` work? it needs XDG_RUNTIME_DIR)", err)
		}
		return (&DBus{conn: conn, dial: dialUser}).withJobs(sig), nil
	}
	// As root, systemd's own socket, as systemctl uses it: no bus daemon
	// between, no Hello, one round trip less for every call.
	if os.Geteuid() == 0 {
		dial := oneConnection(func() (*dbus.Conn, error) { return dialDirect(ctx, "/run/systemd/private") })
		if conn, err := sddbus.NewConnection(signalsOf(dial, &sig)); err == nil {
			return (&DBus{conn: conn, dial: dialSystem}).withJobs(sig), nil
		}
	}
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd over D-Bus: %w (is systemd running, and are you root? without root, use --user)", err)
	}
	return &DBus{conn: conn, dial: dialSystem}, nil
}

// oneConnection returns a dialer for sddbus.NewConnection, which asks for
// two connections, one for calls and one for signals, and gets the same
// one twice. On systemd's own socket that is enough: systemd sends every
// signal to each connection there, with no match to add, and a second
// connection would cost systemd a second set-up before the first call.
// (go-systemd's Close then closes it twice, which godbus allows.)
func oneConnection(dial func() (*dbus.Conn, error)) func() (*dbus.Conn, error) {
	var conn *dbus.Conn
	return func() (*dbus.Conn, error) {
		if conn != nil {
			return conn, nil
		}
		c, err := dial()
		if err == nil {
			conn = c
		}
		return c, err
	}
}

// dialSystem connects to the system manager as Connect does: as root
// straight to systemd's own socket, else (or when that fails) over the
// system bus.
func dialSystem(ctx context.Context) (*dbus.Conn, bool, error) {
	if os.Geteuid() == 0 {
		if conn, err := dialDirect(ctx, "/run/systemd/private"); err == nil {
			return conn, true, nil
		}
	}
	conn, err := dialBus(ctx, dbus.SystemBusPrivate)
	return conn, false, err
}

// dialUser connects to the user's manager: its private socket, else the
// session bus.
func dialUser(ctx context.Context) (*dbus.Conn, bool, error) {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		private := filepath.Join(dir, "systemd", "private")
		if _, err := os.Stat(private); err == nil {
			conn, err := dialDirect(ctx, private)
			return conn, true, err
		}
	}
	conn, err := dialBus(ctx, dbus.SessionBusPrivate)
	return conn, false, err
}

// dialDirect connects straight to a systemd manager's socket: EXTERNAL with
// the uid, and no Hello, as go-systemd does for the system's.
func dialDirect(ctx context.Context, socket string) (*dbus.Conn, error) {
	conn, err := dbus.Dial("unix:path="+socket, dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// dialBus connects to a bus: EXTERNAL with the uid, then Hello.
func dialBus(ctx context.Context, open func(...dbus.ConnOption) (*dbus.Conn, error)) (*dbus.Conn, error) {
	conn, err := open(dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// NewDBus wraps an open connection to a system manager, such as one to a
// test machine's bus.
func NewDBus(conn *sddbus.Conn) *DBus { return &DBus{conn: conn} }

// Close closes the connection.
func (d *DBus) Close() { d.conn.Close() }

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

func (d *DBus) runJob(ctx context.Context, verb string, fn jobFunc, name string) error {
	if d.jobs != nil {
		result, err := d.jobs.run(ctx, func() (int, error) { return fn(ctx, name, "replace", nil) })
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("%s %s: %w", verb, name, err)
		case err != nil:
			return fmt.Errorf("%s %s: %w", verb, name, classify(err))
		case result != "done":
			return fmt.Errorf("%s %s: job result %q: %w", verb, name, result, ErrJobFailed)
		}
		return nil
	}
	ch := make(chan string, 1)
	if _, err := fn(ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, classify(err))
	}
	select {
	case result := <-ch:
		if result != "done" {
			return fmt.Errorf("%s %s: job result %q: %w", verb, name, result, ErrJobFailed)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", verb, name, ctx.Err())
	}
}

// StartUnit implements Systemd.
func (d *DBus) StartUnit(ctx context.Context, name string) error {
	return d.runJob(ctx, "start", d.conn.StartUnitContext, name)
}

// StopUnit implements Systemd.
func (d *DBus) StopUnit(ctx context.Context, name string) error {
	return d.runJob(ctx, "stop", d.conn.StopUnitContext, name)
}

// RestartUnit implements Systemd.
func (d *DBus) RestartUnit(ctx context.Context, name string) error {
	return d.runJob(ctx, "restart", d.conn.RestartUnitContext, name)
}

// ReloadUnit implements Systemd.
func (d *DBus) ReloadUnit(ctx context.Context, name string) error {
	return d.runJob(ctx, "reload", d.conn.ReloadUnitContext, name)
}

// ResetFailedUnit implements Systemd. A unit that is not loaded has nothing
// to reset, which is not an error.
func (d *DBus) ResetFailedUnit(ctx context.Context, name string) error {
	err := classify(d.conn.ResetFailedUnitContext(ctx, name))
	if errors.Is(err, ErrNoSuchUnit) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reset-failed %s: %w", name, err)
	}
	return nil
}

// EnableUnits implements Systemd.
func (d *DBus) EnableUnits(ctx context.Context, names []string) error {
	if _, _, err := d.conn.EnableUnitFilesContext(ctx, names, false, true); err != nil {
		return fmt.Errorf("enable %v: %w", names, classify(err))
	}
	return nil
}

// DisableUnits implements Systemd.
func (d *DBus) DisableUnits(ctx context.Context, names []string) error {
	if _, err := d.conn.DisableUnitFilesContext(ctx, names, false); err != nil {
		return fmt.Errorf("disable %v: %w", names, classify(err))
	}
	return nil
}

// Reload implements Systemd.
func (d *DBus) Reload(ctx context.Context) error {
	if err := d.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("daemon-reload: %w", classify(err))
	}
	return nil
}

// ListUnits implements Systemd.
func (d *DBus) ListUnits(ctx context.Context, patterns ...string) ([]UnitState, error) {
	list, err := d.conn.ListUnitsByPatternsContext(ctx, nil, patterns)
	if err != nil {
		return nil, fmt.Errorf("list units %v: %w", patterns, classify(err))
	}
	out := make([]UnitState, 0, len(list))
	for _, u := range list {
		out = append(out, UnitState{Name: u.Name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState})
	}
	return out, nil
}

// Unit implements Systemd.
func (d *DBus) Unit(ctx context.Context, name string) (UnitState, error) {
	props, err := d.conn.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return UnitState{}, fmt.Errorf("read properties of %s: %w", name, classify(err))
	}
	u := UnitState{
		Name:             name,
		LoadState:        propString(props, "LoadState"),
		ActiveState:      propString(props, "ActiveState"),
		SubState:         propString(props, "SubState"),
		NeedDaemonReload: propBool(props, "NeedDaemonReload"),
		UnitFileState:    propString(props, "UnitFileState"),
	}
	if v, ok := props["StartLimitBurst"].(uint32); ok {
		u.StartLimitBurst = v
	}
	if usec, ok := props["ActiveEnterTimestamp"].(uint64); ok && usec > 0 {
		u.ActiveSince = time.UnixMicro(int64(usec))
	}
	if u.LoadState != "loaded" {
		return u, nil
	}
	svc, err := d.conn.GetUnitTypePropertiesContext(ctx, name, "Service")
	if err != nil {
		// Targets and other non-service units have no Service interface.
		return u, nil
	}
	setServiceProperties(&u, svc)
	return u, nil
}

// ServiceProperties implements Systemd: one GetAll of the unit's Service
// interface. ActiveSince is the main process's start
// (ExecMainStartTimestamp) while there is a main process.
func (d *DBus) ServiceProperties(ctx context.Context, name string) (UnitState, error) {
	// Five properties asked for at once rather than GetAll of the Service
	// interface: its reply carries some 200 properties, which cost systemd
	// and this process more to write and read than the five round trips,
	// and was half the CPU of a status of 200 instances.
	u := UnitState{Name: name}
	props := []string{"Result", "MainPID", "NRestarts", "ControlGroup", "ExecMainStartTimestamp"}
	values := make([]dbus.Variant, len(props))
	errs := make([]error, len(props))
	var wg sync.WaitGroup
	for i, prop := range props {
		wg.Go(func() {
			p, err := d.conn.GetServicePropertyContext(ctx, name, prop)
			if err != nil {
				errs[i] = fmt.Errorf("read %s of %s: %w", prop, name, classify(err))
				return
			}
			values[i] = p.Value
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return u, err
		}
	}
	svc := make(map[string]any, len(props))
	for i, prop := range props {
		svc[prop] = values[i].Value()
	}
	setServiceProperties(&u, svc)
	if usec, ok := svc["ExecMainStartTimestamp"].(uint64); ok && usec > 0 && u.MainPID != 0 {
		u.ActiveSince = time.UnixMicro(int64(usec))
	}
	return u, nil
}

// UnitRun implements Systemd: the five properties are asked for together
// on the one connection, so they cost one round trip.
func (d *DBus) UnitRun(ctx context.Context, name string) (UnitState, error) {
	u := UnitState{Name: name}
	reads := []struct {
		prop string
		get  func(context.Context, string, string) (*sddbus.Property, error)
	}{
		{"ActiveState", d.conn.GetUnitPropertyContext},
		{"SubState", d.conn.GetUnitPropertyContext},
		{"Result", d.conn.GetServicePropertyContext},
		{"NRestarts", d.conn.GetServicePropertyContext},
		{"MainPID", d.conn.GetServicePropertyContext},
	}
	values := make([]dbus.Variant, len(reads))
	errs := make([]error, len(reads))
	var wg sync.WaitGroup
	for i, r := range reads {
		wg.Go(func() {
			p, err := r.get(ctx, name, r.prop)
			if err != nil {
				errs[i] = fmt.Errorf("read %s of %s: %w", r.prop, name, classify(err))
				return
			}
			values[i] = p.Value
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return u, err
	}
	u.ActiveState, _ = values[0].Value().(string)
	u.SubState, _ = values[1].Value().(string)
	u.Result, _ = values[2].Value().(string)
	u.NRestarts, _ = values[3].Value().(uint32)
	u.MainPID, _ = values[4].Value().(uint32)
	return u, nil
}

// setServiceProperties fills u from the properties of its Service
// interface.
func setServiceProperties(u *UnitState, svc map[string]any) {
	u.Result = propString(svc, "Result")
	u.MainPID, _ = svc["MainPID"].(uint32)
	u.NRestarts, _ = svc["NRestarts"].(uint32)
	u.ControlGroup = propString(svc, "ControlGroup")
	if usec, ok := svc["ExecMainStartTimestamp"].(uint64); ok && usec > 0 && u.ActiveState == "active" {
		u.ActiveSince = time.UnixMicro(int64(usec))
	}
}

const (
	unitPathPrefix    = "/org/freedesktop/systemd1/unit/"
	serviceInterface  = "org.freedesktop.systemd1.Service"
	managerInterface  = "org.freedesktop.systemd1.Manager"
	propertiesChanged = "org.freedesktop.DBus.Properties.PropertiesChanged"
)

// WatchUnits implements Systemd on a connection of its own, so that the
// signals never wait behind a method call. On a direct connection to
// systemd (its private socket) systemd sends every client its signals; on
// a bus, the match rules ask the bus for them and Subscribe asks systemd to
// send them.
func (d *DBus) WatchUnits(ctx context.Context, changed func(unit string)) (<-chan error, error) {
	if d.dial == nil {
		return nil, errors.New("watch units: no way to open another connection to this systemd")
	}
	conn, direct, err := d.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch units: connect: %w", err)
	}
	signals := make(chan *dbus.Signal, 256)
	conn.Signal(signals)
	if !direct {
		for _, rule := range [][]dbus.MatchOption{
			{dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchPathNamespace(dbus.ObjectPath(strings.TrimSuffix(unitPathPrefix, "/")))},
			{dbus.WithMatchInterface(managerInterface), dbus.WithMatchMember("UnitNew")},
			{dbus.WithMatchInterface(managerInterface), dbus.WithMatchMember("UnitRemoved")},
		} {
			if err := conn.AddMatchSignalContext(ctx, rule...); err != nil {
				conn.Close()
				return nil, fmt.Errorf("watch units: add match rule: %w", classify(err))
			}
		}
	}
	obj := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	if err := obj.CallWithContext(ctx, managerInterface+".Subscribe", 0).Store(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("watch units: subscribe: %w", classify(err))
	}
	done := make(chan error, 1)
	go func() {
		defer conn.Close()
		for {
			select {
			case <-ctx.Done():
				done <- nil
				return
			case sig, ok := <-signals:
				if !ok {
					done <- errors.New("watch units: the connection to systemd was lost")
					return
				}
				if name := changedUnit(sig); name != "" {
					changed(name)
				}
			}
		}
	}()
	return done, nil
}

// changedUnit returns the unit a signal says changed: a PropertiesChanged
// of a unit's Service interface, or the unit named by UnitNew or
// UnitRemoved; "" for any other signal.
func changedUnit(sig *dbus.Signal) string {
	switch sig.Name {
	case propertiesChanged:
		path := string(sig.Path)
		if !strings.HasPrefix(path, unitPathPrefix) || len(sig.Body) == 0 {
			return ""
		}
		if iface, _ := sig.Body[0].(string); iface != serviceInterface {
			return ""
		}
		return pathBusUnescape(strings.TrimPrefix(path, unitPathPrefix))
	case managerInterface + ".UnitNew", managerInterface + ".UnitRemoved":
		if len(sig.Body) > 0 {
			name, _ := sig.Body[0].(string)
			return name
		}
	}
	return ""
}

// pathBusUnescape undoes sd_bus_path_encode's escaping of a unit name in an
// object path: each byte other than a letter or digit is _ and two hex
// digits.
func pathBusUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnitFileExists implements Systemd.
func (d *DBus) UnitFileExists(ctx context.Context, name string) (bool, error) {
	files, err := d.conn.ListUnitFilesByPatternsContext(ctx, nil, []string{name})
	if err != nil {
		return false, fmt.Errorf("list unit files %s: %w", name, classify(err))
	}
	return len(files) > 0, nil
}

// Version implements Systemd.
func (d *DBus) Version(ctx context.Context) (string, error) {
	p, err := d.conn.GetManagerProperty("Version")
	if err != nil {
		return "", fmt.Errorf("read systemd version: %w", classify(err))
	}
	// GetManagerProperty returns the variant's text form, a quoted string.
	return strings.Trim(p, `"`), nil
}

func propString(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func propBool(m map[string]any, key string) bool {
	b, _ := m[key].(bool)
	return b
}
