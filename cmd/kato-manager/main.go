// Command kato-manager runs KATO processor instances and the KG worker pool
// as systemd units on this host.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/cliguess"
	"github.com/kato-manager/kato-manager/supervisor"
	"github.com/kato-manager/kato-manager/textview"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes, as documented in the README.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError marks a bad invocation: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// app is one invocation: its streams, the scope it works in and the paths
// it works on.
type app struct {
	stdout, stderr io.Writer
	stdin          *os.File
	user           bool
	paths          config.Paths
	configPath     string
	registryPath   string
	// host is --host: run the command there instead of here. args is the
	// whole command line, to hand on to the remote kato-manager.
	host string
	args []string
	// noColor is --no-color.
	noColor bool
}

func main() {
	// SIGHUP is a dropped ssh session: it stops a command at the same safe
	// point as SIGTERM and Ctrl-C, rather than killing it halfway.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	stopProfile := cpuProfile(os.Getenv("KATO_MANAGER_CPUPROFILE"))
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	stopProfile()
	os.Exit(code)
}

// cpuProfile writes a CPU profile of the command to path, when path is
// set, until the returned function is called: the benchmark's profiles of
// list, status and serve (docs/benchmarks.md).
func cpuProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kato-manager: KATO_MANAGER_CPUPROFILE %s: %v\n", path, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, stdin: os.Stdin, args: args}
	root := a.commands()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return a.report(root.ExecuteContext(ctx))
}

// Command groups of the help.
const (
	groupInstances = "instances"
	groupKG        = "kg"
)

// commands is the command tree: every command, its help and its flags. The
// help, the man pages (`make man`) and the shell completions (`kato-manager
// completion bash|zsh|fish`) are all made from it.
func (a *app) commands() *cobra.Command {
	// The help lists commands in the order they are added here.
	cobra.EnableCommandSorting = false
	root := &cobra.Command{
		Use:               "kato-manager",
		Short:             "run KATO processor instances and KG workers as systemd units",
		Version:           version,
		Args:              cobra.ArbitraryArgs,
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return usageError{cliguess.UnknownCommand(cmd, "command", args[0])}
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.host != "" {
				return a.onHosts(cmd)
			}
			return a.resolvePaths(cmd.Flags())
		},
	}
	a.globalFlags(root.PersistentFlags())
	root.Flags().Bool("version", false, "print the version and exit")
	root.SetVersionTemplate("kato-manager {{.Version}}\n")
	root.SetFlagErrorFunc(a.flagError(root))
	root.AddGroup(&cobra.Group{ID: groupInstances, Title: "Instances:"},
		&cobra.Group{ID: groupKG, Title: "KG worker pool (kg-worker@N.service) and its queue:"})
	in := func(group string, cmds ...*cobra.Command) []*cobra.Command {
		for _, c := range cmds {
			c.GroupID = group
		}
		return cmds
	}
	root.AddCommand(in(groupInstances,
		command("start", "register, configure and start an instance (kato@ID.service)", startFlags, a.start),
		a.withInstances(command("stop [ID|NAME]", "stop and remove an instance, or all of them", stopFlags, a.stop)),
		a.withInstances(command("restart ID|NAME", "restart an instance with its ID, ports and settings", restartFlags, a.restart)),
		command("scale --group NAME N", "make a group exactly N replicas NAME-1 to NAME-N, its front updated", scaleFlags, a.scale),
		noArgs("", command("list", "list instances with group, state, pid, ports, uptime and memory", listFlags, a.list)),
		noArgs("", command("status", "check systemd, shared services, instances and drift", jsonFlag, a.status)),
		a.withInstances(command("logs ID|NAME", "show an instance's journal", logsFlags, a.logs)),
		command("apply", "make the instances what a fleet file (YAML, JSON or TOML) says", applyFlags, a.apply),
		command("diff", "show what apply would do, per instance and field; exit 1 when it would change something", diffFlags, a.diff),
		noArgs("; it writes to standard output", command("export", "write the registered instances as a fleet file that apply finds nothing to do with", exportFlags, a.export)),
		noArgs("", command("gc", "repair drift between the registry and systemd", noFlags, a.gc)),
		noArgs("", command("liveness", "restart the instances whose health request failed liveness_failures times in a row (kato-liveness.timer runs it)", jsonFlag, a.liveness)),
		noArgs("", command("install-units", "install the unit files and reload systemd", noFlags, a.installUnits)),
	)...)
	root.AddCommand(in(groupKG,
		parent("workers", "start, stop, scale and inspect the KG workers",
			noArgs("; use -n N", command("start", "start the workers (kg.num_workers of them, or -n N)", workersStartFlags, a.workersStart)),
			noArgs("", command("stop", "stop every worker", noFlags, a.workersStopRestart("stop"))),
			noArgs("", command("restart", "restart the running workers", noFlags, a.workersStopRestart("restart"))),
			command("scale N", "start or stop workers until N run", noFlags, a.workersScale),
			noArgs("", command("health", "check each worker; exit 1 when one is unhealthy", workersHealthFlags, a.workersHealth)),
			noArgs("", command("stats", "the pool's statistics: processed items, KG service, queue", jsonFlag, a.workersStats)),
		),
		parent("queue", "add to and inspect the KG queue",
			command("enqueue CONTENT_ID...", "queue crawled_content rows for KG processing", queueEnqueueFlags, a.queueEnqueue),
			noArgs("", command("list", "list queue items, newest first", queueListFlags, a.queueList)),
			command("retry-failed [ITEM_ID...]", "queue failed items again, all or the ones given", noFlags, a.queueRetryFailed),
			noArgs("", command("stats", "count the queue's items by status", jsonFlag, a.queueStats)),
			command("priority PRIORITY ITEM_ID...", "change the priority of queue items; higher is processed first", noFlags, a.queuePriority),
			command("delete ITEM_ID...", "delete queue items", noFlags, a.queueDelete),
			command("requeue CONTENT_ID... | --all", "process documents again: their completed, failed or skipped items back to pending", queueRequeueFlags, a.queueRequeue),
			noArgs("; use --status STATUS", command("clear --status STATUS", "delete every item in a status (not processing)", queueClearFlags, a.queueClear)),
			noArgs("", command("migrate --to URL", "copy the SQLite queue into an empty PostgreSQL database, for workers on many hosts", queueMigrateFlags, a.queueMigrate)),
		),
		noArgs("; use --listen ADDR", command("serve", "serve the dashboard, /metrics for Prometheus, and /health and /stats as JSON", serveFlags, a.serve)),
	)...)
	root.AddCommand(
		command("version", "print the version", noFlags, a.version),
		a.manCommand(root),
		a.queueDBCommand(),
	)
	describe(root)
	forEach(root, a.completeNames)
	return root
}

// command makes a command: flags defines its flags on the command's flag
// set and returns their values, which do gets with the parsed flag set. The
// positional arguments are fs.Args().
func command[F any](use, short string, flags func(*pflag.FlagSet) F, do func(context.Context, *pflag.FlagSet, F) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs}
	values := flags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return do(cmd.Context(), cmd.Flags(), values) }
	// Positional arguments complete to nothing unless a command says what.
	cmd.ValidArgsFunction = cobra.NoFileCompletions
	return cmd
}

// parent makes a command of subcommands. Without one, or with one it does
// not have, it is a usage error.
func parent(name, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: name, Short: short, Args: cobra.ArbitraryArgs, ValidArgsFunction: cobra.NoFileCompletions}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usagef("%s needs a subcommand: %s", name, strings.Join(cliguess.SubcommandNames(cmd), ", "))
		}
		return usageError{cliguess.UnknownCommand(cmd, name+" subcommand", args[0])}
	}
	cmd.AddCommand(subs...)
	return cmd
}

// noFlags is the flag definition of a command without flags.
func noFlags(*pflag.FlagSet) struct{} { return struct{}{} }

// jsonFlag is the flag definition of a command whose only flag is --json.
func jsonFlag(fs *pflag.FlagSet) *bool { return fs.Bool("json", false, "print JSON") }

// globalFlags are the flags every command takes.
func (a *app) globalFlags(fs *pflag.FlagSet) {
	fs.StringVar(&a.configPath, "config", config.DefaultConfigPath, "configuration file (env KATO_CONFIG; with --user, ~/.config/kato/kato.toml)")
	fs.StringVar(&a.registryPath, "registry", config.DefaultRegistryPath, "instance registry (env KATO_REGISTRY; with --user, ~/.local/state/kato/instances.toml)")
	fs.BoolVar(&a.user, "user", false, "manage instances and workers on your own systemd user manager (systemctl --user), without root")
	fs.StringVarP(&a.host, "host", "H", "", "run the command on [USER@]HOST over ssh, with that host's kato-manager; list and status take several, comma-separated")
	fs.BoolVar(&a.noColor, "no-color", false, "no colour on a terminal (as the environment variable NO_COLOR does)")
}

// resolvePaths settles the scope, system or --user, and applies
// KATO_CONFIG and KATO_REGISTRY to the paths their flags did not set.
func (a *app) resolvePaths(fs *pflag.FlagSet) error {
	paths, err := config.ResolvePaths(a.user, os.Getenv)
	if err != nil {
		return err
	}
	// The units install-units writes run this binary, wherever it lies.
	if exe, err := os.Executable(); err == nil {
		paths.Executable = exe
	}
	a.paths = paths
	if !fs.Changed("config") {
		a.configPath = paths.ConfigFile(os.Getenv)
	}
	if !fs.Changed("registry") {
		a.registryPath = paths.RegistryFile(os.Getenv)
	}
	return nil
}

func (a *app) version(context.Context, *pflag.FlagSet, struct{}) error {
	fmt.Fprintf(a.stdout, "kato-manager %s\n", version)
	return nil
}

// manCommand writes a man page for every command into a directory, for the
// packages and `make man`; it is hidden from the help.
func (a *app) manCommand(root *cobra.Command) *cobra.Command {
	cmd := command("__man DIR", "write the man pages into DIR", noFlags, func(_ context.Context, fs *pflag.FlagSet, _ struct{}) error {
		if fs.NArg() != 1 {
			return usagef("__man takes one directory")
		}
		if err := os.MkdirAll(fs.Arg(0), 0o755); err != nil {
			return err
		}
		header := &doc.GenManHeader{Section: "1", Source: "kato-manager " + version, Manual: "kato-manager manual"}
		return doc.GenManTree(root, header, fs.Arg(0))
	})
	cmd.Hidden = true
	return cmd
}

// report prints err and maps it to an exit code.
func (a *app) report(err error) int {
	if err == nil {
		return exitOK
	}
	err = a.explain(err)
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	// The messages' "kato-manager:" is red on a terminal.
	prefix := a.palette(a.stderr).Paint(textview.Red, "kato-manager:")
	// Every problem of a fleet file on a line of its own; diff's exit
	// status for trouble is 2 as well.
	var bad fileErrors
	if errors.As(err, &bad) {
		for _, e := range bad.errs {
			fmt.Fprintf(a.stderr, "%s %v\n", prefix, e)
		}
		fmt.Fprintf(a.stderr, "%s %d problem(s) in the fleet file; nothing changed\n", prefix, len(bad.errs))
		return exitUsage
	}
	var ec exitCodeError
	if errors.As(err, &ec) {
		if ec.err != nil {
			fmt.Fprintf(a.stderr, "%s %v\n", prefix, flagNames(ec.err))
		}
		return ec.code
	}
	var se *supervisor.StartError
	if errors.As(err, &se) {
		textview.StartError(a.stderr, prefix, se)
		return exitFailed
	}
	fmt.Fprintf(a.stderr, "%s %v\n", prefix, flagNames(err))
	var ue usageError
	if errors.As(err, &ue) && !errors.Is(err, config.ErrMalformed) {
		return exitUsage
	}
	return config.ErrorKindOf(err).ExitCode()
}

// flagNames rewrites a field error to name the command-line flag, which is
// what the user typed.
func flagNames(err error) error {
	var fe *config.FieldError
	// Fields with a dot are config keys; upper-case ones name positional
	// arguments (CONTENT_ID): both stay as they are.
	if errors.As(err, &fe) && !strings.Contains(fe.Field, ".") && !strings.HasPrefix(fe.Field, "-") && strings.ToLower(fe.Field) == fe.Field {
		c := *fe
		c.Field = "--" + strings.ReplaceAll(fe.Field, "_", "-")
		return &c
	}
	return err
}

// noArgs makes giving cmd arguments a usage error: "PATH takes no
// arguments", then hint.
func noArgs(hint string, cmd *cobra.Command) *cobra.Command {
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if c.Flags().NArg() > 0 {
			return usagef("%s takes no arguments%s", strings.TrimPrefix(c.CommandPath(), "kato-manager "), hint)
		}
		return run(c, args)
	}
	return cmd
}

// loadConfig reads the configuration file and the environment overrides.
func (a *app) loadConfig() (*config.Config, error) {
	cfg, err := a.paths.Load(a.configPath)
	if err != nil {
		return nil, err
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return nil, err
	}
	return cfg, nil
}

// managerWith connects to systemd with a configuration already loaded.
func (a *app) managerWith(ctx context.Context, cfg *config.Config) (*supervisor.Manager, func(), error) {
	return a.managerOn(a.dial(ctx), cfg)
}

// loadWithRegistry reads the configuration and the instance registry.
func (a *app) loadWithRegistry() (*config.Config, *config.Registry, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	reg, err := a.registry().Load()
	return cfg, reg, err
}

// withManager runs do with the manager, closed after: on cfg, or when cfg
// is nil on the configuration it loads while systemd is being reached.
func (a *app) withManager(ctx context.Context, cfg *config.Config, do func(*supervisor.Manager) error) error {
	d := a.dial(ctx)
	var err error
	if cfg == nil {
		cfg, err = a.loadConfig()
	}
	if err != nil {
		d.Drop()
		return err
	}
	m, done, err := a.managerOn(d, cfg)
	if err != nil {
		return err
	}
	defer done()
	return do(m)
}

// dial starts connecting to the scope's systemd in the background.
func (a *app) dial(ctx context.Context) *supervisor.Dialing { return supervisor.Dial(ctx, a.connect) }

// managerOn waits for d's connection and makes the manager on it.
func (a *app) managerOn(d *supervisor.Dialing, cfg *config.Config) (*supervisor.Manager, func(), error) {
	m, sd, err := d.Manager(cfg, a.registry(), a.paths)
	if err != nil {
		return nil, nil, err
	}
	return m, sd.Close, nil
}

// journal reads the journal of the scope's units.
func (a *app) journal() supervisor.SystemJournal {
	return supervisor.SystemJournal{User: a.paths.User}
}

// registry opens the instance registry; a command kept waiting for its lock
// says who holds it.
func (a *app) registry() *config.RegistryFile {
	r := config.OpenRegistry(a.registryPath)
	r.OnLockWait = func(lock, holder string) {
		fmt.Fprintf(a.stderr, "waiting for %s, held by %s\n", lock, holder)
	}
	return r
}
