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
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/supervisor"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes, as documented in the README.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	usageHeader = `kato-manager runs KATO processor instances and KG workers as systemd units.

Usage:
  kato-manager COMMAND [flags]

Instances:
  start          register, configure and start an instance (kato@ID.service)
  stop           stop and remove an instance, or all of them
  restart        restart an instance with its ID, ports and settings
  list           list instances with state, pid, ports, uptime and memory
  status         check systemd, shared services, instances and drift
  logs           show an instance's journal
  gc             repair drift between the registry and systemd
  install-units  install the unit files and reload systemd

KG worker pool (kg-worker@N.service) and its queue:
  workers start|stop|restart|scale N|health|stats
  queue enqueue|list|retry-failed|stats
  serve          serve /health and /stats as JSON for monitoring tools

Run 'kato-manager COMMAND --help' for a command's flags.
Global flags: --config PATH (env KATO_CONFIG), --registry PATH (env KATO_REGISTRY), --version
`
)

// usageError marks a bad invocation: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// app is one invocation: its streams and the paths it works on.
type app struct {
	stdout, stderr io.Writer
	stdin          *os.File
	configPath     string
	registryPath   string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, stdin: os.Stdin,
		configPath: envOr("KATO_CONFIG", config.DefaultConfigPath), registryPath: envOr("KATO_REGISTRY", config.DefaultRegistryPath)}
	cmd, rest, err := a.splitGlobal(args)
	if err == nil {
		err = a.dispatch(ctx, cmd, rest)
	}
	return a.report(err)
}

// splitGlobal takes the global flags that may stand before the command.
func (a *app) splitGlobal(args []string) (string, []string, error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		name, value, hasValue := strings.Cut(args[0], "=")
		switch name {
		case "--version":
			return "version", nil, nil
		case "-h", "--help":
			return "help", nil, nil
		case "--config", "--registry":
			if !hasValue {
				if len(args) < 2 {
					return "", nil, usagef("flag %s needs a value", name)
				}
				value, args = args[1], args[1:]
			}
			if name == "--config" {
				a.configPath = value
			} else {
				a.registryPath = value
			}
			args = args[1:]
		default:
			return "", nil, usagef("unknown flag %s before the command; run `kato-manager --help`", name)
		}
	}
	if len(args) == 0 {
		return "help", nil, nil
	}
	return args[0], args[1:], nil
}

func (a *app) dispatch(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "help":
		fmt.Fprint(a.stdout, usageHeader)
		return nil
	case "version":
		fmt.Fprintf(a.stdout, "kato-manager %s\n", version)
		return nil
	case "start":
		return a.start(ctx, args)
	case "stop":
		return a.stop(ctx, args)
	case "restart":
		return a.restart(ctx, args)
	case "list":
		return a.list(ctx, args)
	case "status":
		return a.status(ctx, args)
	case "logs":
		return a.logs(ctx, args)
	case "gc":
		return a.gc(ctx, args)
	case "install-units":
		return a.installUnits(ctx, args)
	case "workers":
		return a.workers(ctx, args)
	case "queue":
		return a.queue(ctx, args)
	case "serve":
		return a.serve(ctx, args)
	}
	return usagef("unknown command %q; run `kato-manager --help`", cmd)
}

// report prints err and maps it to an exit code.
func (a *app) report(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	var se *supervisor.StartError
	if errors.As(err, &se) {
		fmt.Fprintf(a.stderr, "kato-manager: %v\n", se.Err)
		if len(se.Journal) > 0 {
			fmt.Fprintf(a.stderr, "last log lines of %s:\n", se.Unit)
			for _, l := range se.Journal {
				fmt.Fprintf(a.stderr, "  %s\n", l)
			}
		}
		return exitFailed
	}
	if !errors.Is(err, errUnhealthy) {
		fmt.Fprintf(a.stderr, "kato-manager: %v\n", flagNames(err))
	}
	var ue usageError
	var fe *config.FieldError
	if errors.Is(err, config.ErrMalformed) {
		return exitFailed
	}
	if errors.As(err, &ue) || errors.As(err, &fe) || errors.Is(err, config.ErrAmbiguous) {
		return exitUsage
	}
	return exitFailed
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

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// newFlags makes a flag set for a command that reports errors instead of
// exiting.
func (a *app) newFlags(cmd, usage string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: kato-manager %s %s\n\nFlags:\n%s", cmd, usage, fs.FlagUsages())
	}
	return fs
}

// parse parses flags; a parse error is a usage error.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// parseNoArgs parses flags of a command that takes no arguments; message
// says so when some are given.
func parseNoArgs(fs *pflag.FlagSet, args []string, message string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s", message)
	}
	return nil
}

// loadConfig reads the configuration file and the environment overrides.
func (a *app) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(a.configPath)
	if err != nil {
		return nil, err
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return nil, err
	}
	return cfg, nil
}

// manager loads the configuration and connects to systemd.
func (a *app) manager(ctx context.Context) (*supervisor.Manager, func(), error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	return a.managerWith(ctx, cfg)
}

// managerWith connects to systemd with a configuration already loaded.
func (a *app) managerWith(ctx context.Context, cfg *config.Config) (*supervisor.Manager, func(), error) {
	sd, err := supervisor.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	m := &supervisor.Manager{
		Systemd:   sd,
		Config:    cfg,
		Registry:  config.OpenRegistry(a.registryPath),
		Ports:     supervisor.HostPorts{},
		Processes: supervisor.HostProcesses{},
		Journal:   supervisor.SystemJournal{},
		Paths:     supervisor.DefaultPaths(),
	}
	return m, sd.Close, nil
}
