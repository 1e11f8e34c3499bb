package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
	"github.com/kato-manager/kato-manager/units"
)

// startFlagValues are start's flags.
type startFlagValues struct {
	id, name, processor, network, command *string
	template, group                       *string
	port, zmqPort, parallel, weight       *int
	params                                *config.ParamFlags
	timeout                               *time.Duration
}

func startFlags(fs *pflag.FlagSet) *startFlagValues {
	f := &startFlagValues{
		id:        fs.String("id", "", "processor ID: letters, digits, - and _, 1-64 characters (default: generated from time and pid)"),
		name:      fs.String("name", "", "human-readable name (default KatoProcessor)"),
		port:      fs.IntP("port", "p", 0, "REST API port on the host; the next free one is used if it is taken (default: ports.api_start)"),
		zmqPort:   fs.Int("zmq-port", 0, "ZMQ port on the host; the next free one is used if it is taken (default: ports.zmq_start)"),
		processor: fs.String("processor", "", "named processor of kato.toml ([processors.NAME]) to run (default: [processor])"),
	}
	fs.StringVarP(f.processor, "tag", "t", "", "alias of --processor, the old script's image tag")
	f.network = fs.String("network", "", "host, or private: a network namespace of its own (default: the processor's network)")
	f.params = config.AddParamFlags(fs)
	f.command = fs.String("processor-command", "", "processor command for this instance, split at spaces (default: the processor's command)")
	f.timeout = fs.Duration("timeout", 0, "how long to wait for the health request to answer (default: the processor's ready_timeout)")
	f.template = fs.String("template", "", "start from the settings of [templates.NAME] of kato.toml; the flags given override them")
	f.group = fs.String("group", "", "make the instance part of the group NAME (kato-group@NAME.target); alone, start the group's registered instances that are not running")
	f.parallel = fs.Int("parallel", 0, "with --group alone, how many instances start at once (default: batch.parallel of kato.toml, else all at once)")
	f.weight = fs.Int("weight", 0, "with --group, the instance's share of the group front's requests against the other members' weights, 1 to 256; 1 when not given")
	return f
}

// onlyChanged reports whether the flags given are all among names.
func onlyChanged(fs *pflag.FlagSet, names ...string) bool {
	only := true
	fs.Visit(func(f *pflag.Flag) {
		if !slices.Contains(names, f.Name) {
			only = false
		}
	})
	return only
}

// groupBatch runs a start or restart of a group with its progress, and
// reports it.
func (a *app) groupBatch(ctx context.Context, fs *pflag.FlagSet, group string, b *batchFlagValues, verb string,
	do func(*supervisor.Manager, context.Context, string, supervisor.BatchOptions) (*supervisor.GroupResult, error)) error {
	opts, err := b.options(fs)
	if err != nil {
		return err
	}
	if err := checkGroupFlag(group); err != nil {
		return err
	}
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		pr := textview.NewProgress(a.stderr)
		opts.Progress = pr.Update
		res, err := do(m, ctx, group, opts)
		pr.Finish()
		if res == nil {
			return err
		}
		return a.printGroupResult(verb, res, err)
	})
}

// checkGroupFlag checks the value of a --group flag.
func checkGroupFlag(group string) error {
	if rule := units.GroupNameRule(group); rule != "" {
		return &config.FieldError{Field: "--group", Value: group, Rule: rule}
	}
	return nil
}

// printGroupResult reports a start or restart of a group.
func (a *app) printGroupResult(verb string, res *supervisor.GroupResult, err error) error {
	textview.GroupResult(a.stdout, verb, res)
	if errors.Is(err, supervisor.ErrBatchFailed) {
		return exitCodeError{code: exitFailed}
	}
	return err
}

func (a *app) start(ctx context.Context, fs *pflag.FlagSet, f *startFlagValues) error {
	if fs.NArg() > 0 {
		return usagef("start takes no arguments, got %q; use --id and --name", fs.Args())
	}
	if fs.Changed("group") && onlyChanged(fs, "group", "parallel", "timeout") {
		// `start --group NAME` alone: the group's registered instances
		// that are not running start as one batch.
		return a.groupBatch(ctx, fs, *f.group, &batchFlagValues{parallel: f.parallel, timeout: f.timeout}, "started", (*supervisor.Manager).StartGroup)
	}
	if fs.Changed("parallel") {
		return usagef("--parallel goes with --group alone, which starts a group's instances")
	}
	if _, err := startInput(fs, f); err != nil {
		return err
	}
	d := a.dial(ctx)
	cfg, err := a.loadConfig()
	if err != nil {
		d.Drop()
		return err
	}
	req, err := startRequest(fs, f, cfg)
	if err != nil {
		d.Drop()
		return err
	}
	m, done, err := a.managerOn(d, cfg)
	if err != nil {
		return err
	}
	defer done()
	pr := textview.NewWaitLine(a.stderr, a.palette(a.stderr))
	m.Waiting = pr.Update
	res, err := m.Start(ctx, req)
	pr.Finish()
	if err != nil {
		return err
	}
	for _, n := range res.Notices {
		fmt.Fprintf(a.stderr, "notice: %s\n", n)
	}
	inst := res.Instance
	if res.AlreadyRunning {
		fmt.Fprintf(a.stdout, "instance %s (%s) is already running: %s, API port %d\n", inst.ID, inst.Name, inst.Unit, inst.APIPort)
		return nil
	}
	proc, _ := cfg.ProcessorNamed(inst.Processor)
	fmt.Fprintf(a.stdout, "started %s (%s): %s, processor %s (generation %s), %s network, API port %d%s\n",
		inst.ID, inst.Name, inst.Unit, inst.ProcessorShown(), proc.Generation, inst.Network, inst.APIPort, textview.ZMQText(inst.ZMQPort))
	if inst.Group != "" {
		fmt.Fprintf(a.stdout, "  group: %s (%s)\n", inst.Group, units.GroupTarget(inst.Group))
	}
	fmt.Fprintf(a.stdout, "  health: curl http://localhost:%d%s\n", inst.APIPort, proc.ReadyPath(inst.ID))
	return nil
}

// startInput is the start start's flags ask for, refused when a flag is
// wrong by itself (supervisor.StartInput.Check), before the configuration
// is read.
func startInput(fs *pflag.FlagSet, f *startFlagValues) (supervisor.StartInput, error) {
	if fs.Changed("processor") && fs.Changed("tag") {
		return supervisor.StartInput{}, usagef("--processor and --tag are the same flag; give one")
	}
	in := supervisor.StartInput{ID: *f.id, Name: *f.name, Processor: *f.processor, Network: *f.network, Group: *f.group, Template: *f.template,
		APIPort: *f.port, ZMQPort: *f.zmqPort, Weight: *f.weight, Command: strings.Fields(*f.command), Timeout: *f.timeout, Given: map[string]bool{}}
	fs.Visit(func(flag *pflag.Flag) { in.Given[flag.Name] = true })
	in.Given["processor"] = in.Given["processor"] || in.Given["tag"]
	return in, in.Check()
}

// startRequest is the request start's flags make with the configuration:
// the flags given over --template's settings over kato.toml's [defaults]
// (supervisor.StartInput, as the dashboard's form and fleet files layer),
// validated as a whole.
func startRequest(fs *pflag.FlagSet, f *startFlagValues, cfg *config.Config) (supervisor.StartRequest, error) {
	in, err := startInput(fs, f)
	if err == nil {
		in.Parameters, in.Explicit, err = f.params.Apply(config.Parameters{})
	}
	if err != nil {
		return supervisor.StartRequest{}, err
	}
	in.Explicit = append(in.Explicit, explicit(fs, "name", "port", "zmq-port", "processor", "tag", "network", "processor-command", "template", "group", "weight")...)
	return in.Request(cfg)
}

// explicit are the flags of names that were given, as typed, in the order
// of names.
func explicit(fs *pflag.FlagSet, names ...string) []string {
	var out []string
	for _, name := range names {
		if fs.Changed(name) {
			out = append(out, "--"+name)
		}
	}
	return out
}

// stopFlagValues are stop's flags.
type stopFlagValues struct {
	id, name, group         *string
	all, withMongo, noMongo *bool
	parallel                *int
}

func stopFlags(fs *pflag.FlagSet) *stopFlagValues {
	return &stopFlagValues{
		id:        fs.String("id", "", "stop the instance with this ID"),
		name:      fs.String("name", "", "stop the instance with this name, or the only one whose name begins with or contains it"),
		all:       fs.Bool("all", false, "stop every instance (the default without an ID or name)"),
		withMongo: fs.Bool("with-mongo", false, "with --all, also stop the shared services (services.units)"),
		noMongo:   fs.Bool("no-mongo", false, "with --all, keep the shared services running (the default without a terminal)"),
		group:     fs.String("group", "", "stop and remove every instance of the group NAME"),
		parallel:  fs.Int("parallel", 0, "with --group, how many instances stop at once (default: batch.parallel of kato.toml, else all at once)"),
	}
}

// stopGroup is `stop --group NAME`.
func (a *app) stopGroup(ctx context.Context, fs *pflag.FlagSet, f *stopFlagValues) error {
	if fs.NArg() > 0 || !onlyChanged(fs, "group", "parallel") {
		return usagef("--group goes alone (with --parallel): it stops every instance of the group")
	}
	b := &batchFlagValues{parallel: f.parallel, timeout: new(time.Duration)}
	if _, err := b.options(fs); err != nil {
		return err
	}
	if err := checkGroupFlag(*f.group); err != nil {
		return err
	}
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		res, err := m.StopGroup(ctx, *f.group, *f.parallel)
		if res != nil {
			for _, id := range res.Stopped {
				fmt.Fprintf(a.stdout, "stopped and removed %s\n", id)
			}
		}
		return err
	})
}

func (a *app) stop(ctx context.Context, fs *pflag.FlagSet, f *stopFlagValues) error {
	if fs.Changed("group") {
		return a.stopGroup(ctx, fs, f)
	}
	if fs.Changed("parallel") {
		return usagef("--parallel goes with --group")
	}
	refs := fs.Args()
	if *f.id != "" {
		refs = append(refs, *f.id)
	}
	if *f.name != "" {
		refs = append(refs, *f.name)
	}
	if len(refs) > 1 {
		return usagef("stop takes one instance, got %q", refs)
	}
	if *f.withMongo && *f.noMongo {
		return usagef("--with-mongo and --no-mongo exclude each other")
	}
	if len(refs) == 1 && (*f.all || *f.withMongo || *f.noMongo) {
		return usagef("--all, --with-mongo and --no-mongo go without an instance")
	}
	for _, f := range []string{"id", "name"} {
		if v, _ := fs.GetString(f); fs.Changed(f) && v == "" {
			return &config.FieldError{Field: f, Value: "", Rule: "must not be empty"}
		}
	}
	if len(refs) == 1 {
		// Found, or refused, before systemd is asked; a member of this
		// host's front on another host is stopped there.
		target, err := supervisor.StopTarget(a.registry(), a.paths, refs[0])
		if err != nil {
			if rm, ok := a.remoteMember(refs[0]); ok {
				return a.stopRemoteMember(ctx, refs[0], rm)
			}
			return err
		}
		refs[0] = target
	}
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		if len(refs) == 1 {
			pr := textview.NewWaitLine(a.stderr, a.palette(a.stderr))
			m.Waiting = pr.Update
			res, err := m.Stop(ctx, refs[0])
			pr.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "stopped and removed %s\n", res.Stopped[0])
			return nil
		}
		withServices := *f.withMongo
		if !*f.withMongo && !*f.noMongo && len(m.Config.Services.Units) > 0 {
			_, withServices = a.ask(fmt.Sprintf("Also stop the shared services (%s)?", strings.Join(m.Config.Services.Units, ", ")))
		}
		res, err := m.StopAll(ctx, withServices)
		if res != nil {
			for _, s := range res.Stopped {
				fmt.Fprintf(a.stdout, "stopped and removed %s\n", s)
			}
			for _, s := range res.Services {
				fmt.Fprintf(a.stdout, "stopped %s\n", s)
			}
			if len(res.Stopped) == 0 && err == nil {
				fmt.Fprintln(a.stdout, "no instances")
			}
		}
		return err
	})
}

// findInstance looks ref up in the registry, without systemd: an unknown
// or ambiguous instance is a usage error found before anything is asked of
// systemd. A unique prefix or part of a name selects its instance, for
// stop, restart and logs alike.
func (a *app) findInstance(ref string) (*config.Instance, error) {
	reg, err := a.registry().Load()
	if err != nil {
		return nil, err
	}
	return reg.Match(ref)
}

// positiveDuration checks a duration flag the user gave: it must be
// greater than zero.
func positiveDuration(fs *pflag.FlagSet, flag string, d time.Duration) error {
	if fs.Changed(flag) {
		return config.PositiveDuration(flag, d)
	}
	return nil
}

// restartFlagValues are restart's flags.
type restartFlagValues struct {
	timeout                         *time.Duration
	group                           *string
	parallel, maxUnavailable, surge *int
}

func restartFlags(fs *pflag.FlagSet) *restartFlagValues {
	return &restartFlagValues{
		timeout:        fs.Duration("timeout", 0, "how long to wait for the health request to answer (default: the processor's ready_timeout)"),
		group:          fs.String("group", "", "restart every instance of the group NAME, as one batch"),
		parallel:       fs.Int("parallel", 0, "with --group, how many instances restart at once (default: batch.parallel of kato.toml, else all at once)"),
		maxUnavailable: fs.Int("max-unavailable", 1, "with --group of a group with a front, how many members are out of the rotation at once (never all); with --surge, how far the serving members may fall below the group's size (0 allowed)"),
		surge:          fs.Int("surge", 0, "with --group of a group with a front, start N extra members from the group's template before taking members out, and remove them after the roll (default: the group's surge)"),
	}
}

func (a *app) restart(ctx context.Context, fs *pflag.FlagSet, f *restartFlagValues) error {
	if fs.Changed("group") {
		if fs.NArg() > 0 {
			return usagef("restart takes an instance or --group, not both")
		}
		return a.restartGroup(ctx, fs, f)
	}
	for _, flag := range []string{"max-unavailable", "surge", "parallel"} {
		if fs.Changed(flag) {
			return usagef("--%s goes with --group", flag)
		}
	}
	if fs.NArg() != 1 {
		return usagef("restart takes one instance ID or name, or --group NAME")
	}
	if err := positiveDuration(fs, "timeout", *f.timeout); err != nil {
		return err
	}
	found, err := a.findInstance(fs.Arg(0))
	if err != nil {
		if rm, ok := a.remoteMember(fs.Arg(0)); ok {
			return a.restartRemoteMember(ctx, fs.Arg(0), rm, *f.timeout)
		}
		return err
	}
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		pr := textview.NewWaitLine(a.stderr, a.palette(a.stderr))
		m.Waiting = pr.Update
		inst, err := m.Restart(ctx, found.ID, *f.timeout)
		pr.Finish()
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "restarted %s (%s): API port %d%s\n", inst.ID, inst.Name, inst.APIPort, textview.ZMQText(inst.ZMQPort))
		return nil
	})
}

// listFlagValues are list's flags.
type listFlagValues struct {
	json, fronts *bool
	group        *string
}

func listFlags(fs *pflag.FlagSet) *listFlagValues {
	return &listFlagValues{json: fs.Bool("json", false, "print JSON"), fronts: fs.Bool("fronts", false, "list the groups' fronts alone"),
		group: fs.String("group", "", "only the instances and the front of the group NAME")}
}

func (a *app) list(ctx context.Context, fs *pflag.FlagSet, f *listFlagValues) error {
	if fs.Changed("group") {
		if err := checkGroupFlag(*f.group); err != nil {
			return err
		}
	}
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		all, err := m.ListAll(ctx)
		if err != nil {
			return err
		}
		views, fronts := all.Instances, all.Fronts
		if fs.Changed("group") {
			views = slices.DeleteFunc(views, func(v supervisor.InstanceView) bool { return v.Group != *f.group })
			fronts = slices.DeleteFunc(fronts, func(v supervisor.FrontView) bool { return v.Group != *f.group })
		}
		if *f.fronts {
			if *f.json {
				return writeJSON(a.stdout, fronts)
			}
			if len(fronts) == 0 {
				fmt.Fprintln(a.stdout, "no fronts")
				return nil
			}
			return textview.Fronts(a.stdout, a.palette(a.stdout), fronts, false)
		}
		if *f.json {
			return writeJSON(a.stdout, views)
		}
		if len(views) == 0 {
			fmt.Fprintln(a.stdout, "no instances; start one with `kato-manager start --id ID`")
		} else if err := textview.List(a.stdout, views); err != nil {
			return err
		}
		if len(fronts) > 0 {
			fmt.Fprintln(a.stdout, "fronts:")
			return textview.Fronts(a.stdout, a.palette(a.stdout), fronts, false)
		}
		return nil
	})
}

func (a *app) status(ctx context.Context, fs *pflag.FlagSet, asJSON *bool) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	var st *supervisor.Status
	if m, done, err := a.managerWith(ctx, cfg); err != nil {
		// Not reaching systemd is a finding of status, not a failure to run.
		st = &supervisor.Status{SystemdError: err.Error(), Services: []supervisor.ServiceState{}, Instances: []supervisor.InstanceStatus{}, Fronts: []supervisor.FrontView{}, Warnings: []string{}}
	} else {
		defer done()
		if st, err = m.Status(ctx); err != nil {
			return err
		}
	}
	if *asJSON {
		if err := writeJSON(a.stdout, st); err != nil {
			return err
		}
	} else {
		textview.Status(a.stdout, a.palette(a.stdout), st)
	}
	if !st.Healthy() {
		return errUnhealthy
	}
	return nil
}

// errUnhealthy makes status exit 1 without another message: the report
// already says what is wrong.
var errUnhealthy = exitCodeError{code: exitFailed}

// logsFlagValues are logs' flags.
type logsFlagValues struct {
	follow *bool
	lines  *int
	since  *string
}

func logsFlags(fs *pflag.FlagSet) *logsFlagValues {
	return &logsFlagValues{
		follow: fs.BoolP("follow", "f", false, "keep printing new lines"),
		lines:  fs.IntP("lines", "n", 50, "how many past lines to show (with --since: all of them, unless given)"),
		since:  fs.String("since", "", "only lines logged since then: 2006-01-02[ 15:04[:05]], RFC 3339, today, yesterday, or a duration ago (10m, 2h30m)"),
	}
}

func (a *app) logs(ctx context.Context, fs *pflag.FlagSet, f *logsFlagValues) error {
	if fs.NArg() != 1 {
		return usagef("logs takes one instance ID or name")
	}
	var since *string
	if fs.Changed("since") {
		since = f.since
	}
	q, err := supervisor.NewJournalQuery(*f.lines, fs.Changed("lines"), since, *f.follow, time.Now())
	if err != nil {
		return err
	}
	inst, err := a.findInstance(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%w; the journal of a removed instance stays readable with `journalctl -u kato@ID.service`", err)
	}
	q.Unit = inst.Unit
	return a.journal().Read(ctx, q, func(line string) error {
		_, err := fmt.Fprintln(a.stdout, line)
		return err
	})
}

func (a *app) gc(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		d, err := m.GC(ctx)
		for _, id := range d.MissingUnits {
			fmt.Fprintf(a.stdout, "removed registry entry %s: its unit files were gone\n", id)
		}
		for _, id := range d.OrphanUnits {
			fmt.Fprintf(a.stdout, "removed unit %s: it had no registry entry\n", units.InstanceUnit(id))
		}
		if d.Empty() && err == nil {
			fmt.Fprintln(a.stdout, "nothing to repair")
		}
		return err
	})
}

func (a *app) installUnits(ctx context.Context, fs *pflag.FlagSet, _ struct{}) error {
	return a.withManager(ctx, nil, func(m *supervisor.Manager) error {
		res, err := m.InstallUnits(ctx)
		for _, f := range res.Written {
			fmt.Fprintf(a.stdout, "wrote %s\n", f)
		}
		for _, f := range res.Removed {
			fmt.Fprintf(a.stdout, "removed %s: the vendor files live under %s now, /etc is for local overrides\n", f, filepath.Dir(filepath.Dir(m.Paths.VendorUnitDir)))
		}
		if res.Secured != "" {
			fmt.Fprintf(a.stdout, "made %s 0640 root:%s\n", res.Secured, config.ServiceUser)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "units installed; systemd reloaded; %s and %s enabled\n", units.InstanceTarget, units.WorkerTarget)
		if !res.NewServiceTemplates() {
			return nil
		}
		// What runs was started from the earlier files: restarted, it runs
		// under the new ones (a processor under its own user, for one).
		restarted, err := m.RestartRunning(ctx)
		for _, u := range restarted {
			fmt.Fprintf(a.stdout, "restarted %s on the new unit files\n", u)
		}
		return err
	})
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
