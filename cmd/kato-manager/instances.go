package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/supervisor"
)

func (a *app) start(ctx context.Context, args []string) error {
	fs := a.newFlags("start", "[flags]")
	id := fs.String("id", "", "processor ID: letters, digits, - and _, 1-64 characters (default: generated from time and pid)")
	name := fs.String("name", "", "human-readable name (default KatoProcessor)")
	port := fs.IntP("port", "p", 0, "REST API port on the host; the next free one is used if it is taken (default: ports.api_start)")
	zmqPort := fs.Int("zmq-port", 0, "ZMQ port on the host; the next free one is used if it is taken (default: ports.zmq_start)")
	processor := fs.String("processor", "", "named processor of kato.toml ([processors.NAME]) to run (default: [processor])")
	fs.StringVarP(processor, "tag", "t", "", "alias of --processor, the old script's image tag")
	network := fs.String("network", "", "host, or private: a network namespace of its own (default: the processor's network)")
	params := config.AddParamFlags(fs)
	command := fs.String("processor-command", "", "processor command for this instance, split at spaces (default: the processor's command)")
	timeout := fs.Duration("timeout", 0, "how long to wait for the health request to answer (default: the processor's ready_timeout)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("start takes no arguments, got %q; use --id and --name", fs.Args())
	}
	if fs.Changed("processor") && fs.Changed("tag") {
		return usagef("--processor and --tag are the same flag; give one")
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	// Flags left unset take the configured defaults, not the built-in ones.
	parameters, explicit, err := params.Apply(cfg.Defaults)
	if err != nil {
		return err
	}
	for _, f := range []string{"name", "port", "zmq-port", "processor", "tag", "network", "processor-command"} {
		if fs.Changed(f) {
			explicit = append(explicit, "--"+f)
		}
	}
	req := supervisor.StartRequest{
		ID: *id, Name: *name, APIPort: *port, ZMQPort: *zmqPort, Processor: *processor, Network: *network,
		Parameters: parameters, Command: strings.Fields(*command), Explicit: explicit, Timeout: *timeout,
	}
	if err := supervisor.ValidateStart(req); err != nil {
		return err
	}
	m, done, err := a.managerWith(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	res, err := m.Start(ctx, req)
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
	processorName := inst.Processor
	if processorName == "" {
		processorName = config.DefaultProcessor
	}
	fmt.Fprintf(a.stdout, "started %s (%s): %s, processor %s (generation %s), %s network, API port %d, ZMQ port %d\n",
		inst.ID, inst.Name, inst.Unit, processorName, proc.Generation, inst.Network, inst.APIPort, inst.ZMQPort)
	fmt.Fprintf(a.stdout, "  health: curl http://localhost:%d%s\n", inst.APIPort, proc.ReadyPath(inst.ID))
	return nil
}

func (a *app) stop(ctx context.Context, args []string) error {
	fs := a.newFlags("stop", "[ID|NAME] [flags]")
	id := fs.String("id", "", "stop the instance with this ID")
	name := fs.String("name", "", "stop the instance with this name (must match exactly one)")
	all := fs.Bool("all", false, "stop every instance (the default without an ID or name)")
	withMongo := fs.Bool("with-mongo", false, "with --all, also stop the shared services (services.units)")
	noMongo := fs.Bool("no-mongo", false, "with --all, keep the shared services running (the default without a terminal)")
	if err := parse(fs, args); err != nil {
		return err
	}
	refs := fs.Args()
	if *id != "" {
		refs = append(refs, *id)
	}
	if *name != "" {
		refs = append(refs, *name)
	}
	if len(refs) > 1 {
		return usagef("stop takes one instance, got %q", refs)
	}
	if *withMongo && *noMongo {
		return usagef("--with-mongo and --no-mongo exclude each other")
	}
	if len(refs) == 1 && (*all || *withMongo || *noMongo) {
		return usagef("--all, --with-mongo and --no-mongo go without an instance")
	}
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	if len(refs) == 1 {
		res, err := m.Stop(ctx, refs[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "stopped and removed %s\n", res.Stopped[0])
		return nil
	}
	withServices := *withMongo
	if !*withMongo && !*noMongo && len(m.Config.Services.Units) > 0 && isTerminal(a.stdin.Fd()) {
		fmt.Fprintf(a.stdout, "Also stop the shared services (%s)? [y/N] ", strings.Join(m.Config.Services.Units, ", "))
		line, _ := bufio.NewReader(a.stdin).ReadString('\n')
		withServices = strings.HasPrefix(strings.ToLower(strings.TrimSpace(line)), "y")
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
}

func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

func (a *app) restart(ctx context.Context, args []string) error {
	fs := a.newFlags("restart", "ID|NAME [flags]")
	timeout := fs.Duration("timeout", 0, "how long to wait for the health request to answer (default: the processor's ready_timeout)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("restart takes one instance ID or name")
	}
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	inst, err := m.Restart(ctx, fs.Arg(0), *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "restarted %s (%s): API port %d, ZMQ port %d\n", inst.ID, inst.Name, inst.APIPort, inst.ZMQPort)
	return nil
}

func (a *app) list(ctx context.Context, args []string) error {
	fs := a.newFlags("list", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args, "list takes no arguments"); err != nil {
		return err
	}
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	views, err := m.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(a.stdout, "no instances; start one with `kato-manager start --id ID`")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPROCESSOR\tNETWORK\tSTATE\tPID\tAPI\tZMQ\tUPTIME\tMEMORY")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", v.ID, v.Name, processorLabel(v), v.Network, v.State(), dash(v.PID), v.APIPort, v.ZMQPort, uptime(v.UptimeSeconds, v.PID), memory(v.MemoryBytes))
	}
	return tw.Flush()
}

func (a *app) status(ctx context.Context, args []string) error {
	fs := a.newFlags("status", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args, "status takes no arguments"); err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	var st *supervisor.Status
	if m, done, err := a.managerWith(ctx, cfg); err != nil {
		// Not reaching systemd is a finding of status, not a failure to run.
		st = &supervisor.Status{SystemdError: err.Error(), Services: []supervisor.ServiceState{}, Instances: []supervisor.InstanceStatus{}}
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
		printStatus(a, st)
	}
	if !st.Healthy() {
		return errUnhealthy
	}
	return nil
}

// errUnhealthy makes status exit 1 without another message: the report
// already says what is wrong.
var errUnhealthy = silentError{}

type silentError struct{}

func (silentError) Error() string { return "" }

func printStatus(a *app, st *supervisor.Status) {
	if !st.SystemdReachable {
		fmt.Fprintf(a.stdout, "systemd: unreachable: %s\n", st.SystemdError)
		return
	}
	fmt.Fprintf(a.stdout, "systemd: reachable (version %s)\n", st.SystemdVersion)
	if len(st.Services) > 0 {
		fmt.Fprintln(a.stdout, "shared services:")
		for _, s := range st.Services {
			fmt.Fprintf(a.stdout, "  %s: %s (%s/%s)\n", s.Unit, s.LoadState, s.ActiveState, s.SubState)
		}
	}
	if len(st.Instances) == 0 {
		fmt.Fprintln(a.stdout, "instances: none")
	} else {
		fmt.Fprintln(a.stdout, "instances:")
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tUNIT\tPROCESSOR\tNETWORK\tSTATE\tRESTARTS\tAPI\tLISTENING\tANSWERING\tPROBLEM")
		for _, i := range st.Instances {
			problem := i.Problem
			if problem == "" {
				problem = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", i.ID, i.Unit, processorLabel(i.InstanceView), i.Network, i.State(), i.Restarts, i.APIPort, yesNo(i.APIListening), yesNo(i.Answering), problem)
		}
		tw.Flush()
	}
	if st.Drift.Empty() {
		fmt.Fprintln(a.stdout, "registry: in step with systemd")
		return
	}
	if len(st.Drift.MissingUnits) > 0 {
		fmt.Fprintf(a.stdout, "registry: entries whose unit vanished: %s (run `kato-manager gc`)\n", strings.Join(st.Drift.MissingUnits, ", "))
	}
	if len(st.Drift.OrphanUnits) > 0 {
		fmt.Fprintf(a.stdout, "registry: units with no entry: %s (run `kato-manager gc`)\n", strings.Join(st.Drift.OrphanUnits, ", "))
	}
}

func (a *app) logs(ctx context.Context, args []string) error {
	fs := a.newFlags("logs", "ID|NAME [-f] [-n N]")
	follow := fs.BoolP("follow", "f", false, "keep printing new lines")
	lines := fs.IntP("lines", "n", 50, "how many past lines to show")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("logs takes one instance ID or name")
	}
	if *lines < 0 {
		return &config.FieldError{Field: "lines", Value: fmt.Sprint(*lines), Rule: "must be 0 or more"}
	}
	reg, err := config.OpenRegistry(a.registryPath).Load()
	if err != nil {
		return err
	}
	unit := "kato@" + fs.Arg(0) + ".service"
	if inst, err := reg.Find(fs.Arg(0)); err == nil {
		unit = inst.Unit
	} else if config.ValidateID(fs.Arg(0)) != nil {
		return err
	}
	j := supervisor.SystemJournal{}
	if *follow {
		return j.Follow(ctx, unit, *lines, a.stdout)
	}
	out, err := j.Tail(ctx, unit, *lines)
	for _, l := range out {
		fmt.Fprintln(a.stdout, l)
	}
	return err
}

func (a *app) gc(ctx context.Context, args []string) error {
	fs := a.newFlags("gc", "")
	if err := parseNoArgs(fs, args, "gc takes no arguments"); err != nil {
		return err
	}
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	d, err := m.GC(ctx)
	for _, id := range d.MissingUnits {
		fmt.Fprintf(a.stdout, "removed registry entry %s: its unit files were gone\n", id)
	}
	for _, id := range d.OrphanUnits {
		fmt.Fprintf(a.stdout, "removed unit kato@%s.service: it had no registry entry\n", id)
	}
	if d.Empty() && err == nil {
		fmt.Fprintln(a.stdout, "nothing to repair")
	}
	return err
}

func (a *app) installUnits(ctx context.Context, args []string) error {
	fs := a.newFlags("install-units", "")
	if err := parseNoArgs(fs, args, "install-units takes no arguments"); err != nil {
		return err
	}
	m, done, err := a.manager(ctx)
	if err != nil {
		return err
	}
	defer done()
	changed, err := m.InstallUnits(ctx)
	for _, f := range changed {
		fmt.Fprintf(a.stdout, "wrote %s\n", f)
	}
	if err == nil {
		fmt.Fprintln(a.stdout, "units installed; systemd reloaded")
	}
	return err
}

// processorLabel is the processor column: its name and generation.
func processorLabel(v supervisor.InstanceView) string {
	if v.Generation == "" {
		return v.Processor + " (missing)"
	}
	return v.Processor + " (" + v.Generation + ")"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(pid int32) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func uptime(seconds int64, pid int32) string {
	if pid == 0 {
		return "-"
	}
	return (time.Duration(seconds) * time.Second).String()
}

func memory(b uint64) string {
	if b == 0 {
		return "-"
	}
	const unit = 1024
	v, suffix := float64(b), "B"
	for _, s := range []string{"K", "M", "G", "T"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f%s", v, suffix)
}
