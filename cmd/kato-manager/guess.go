package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/suggest"
	"github.com/kato-manager/kato-manager/supervisor"
)

// flagError is the usage error of a command line whose flags do not parse,
// with the flag or command it was probably meant to have.
//
// Cobra looks for an unknown command before it parses the flags only for a
// command whose Args is nil (its legacyArgs, in Find). The root and the
// parents here set Args, to word that error themselves in RunE, which runs
// after the flags are parsed: `kato-manager strat --id a` failed on --id,
// which the root does not have, before the root saw "strat". So a flag error
// on a command that has subcommands is first checked for a positional
// argument, which can only be a command it does not have.
func (a *app) flagError(root *cobra.Command) func(*cobra.Command, error) error {
	return func(cmd *cobra.Command, err error) error {
		if cmd.HasAvailableSubCommands() {
			if name := strayCommand(root, cmd, a.args); name != "" {
				what := "command"
				if cmd.HasParent() {
					what = cmd.Name() + " subcommand"
				}
				return unknownCommand(cmd, what, name)
			}
		}
		var ne *pflag.NotExistError
		if errors.As(err, &ne) && ne.GetSpecifiedShortnames() == "" {
			var names []string
			cmd.Flags().VisitAll(func(f *pflag.Flag) {
				if !f.Hidden {
					names = append(names, f.Name)
				}
			})
			if near := suggest.Nearest(ne.GetSpecifiedName(), names); len(near) > 0 {
				for i := range near {
					near[i] = "--" + near[i]
				}
				err = fmt.Errorf("%w; did you mean %s?", err, suggest.OrList(near))
			}
			err = fmt.Errorf("%w; run `%s --help`", err, cmd.CommandPath())
		}
		return usageError{err}
	}
}

// strayCommand returns the first positional argument of args for cmd, the
// command args run, with any flag skipped, known or not; "" when there is
// none.
func strayCommand(root, cmd *cobra.Command, args []string) string {
	found, rest, err := root.Find(args)
	if err != nil || found != cmd {
		return ""
	}
	// The flags' names and whether they take a value are all that is needed
	// to step over them; their values go nowhere.
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		fs.StringP(f.Name, f.Shorthand, "", "")
		fs.Lookup(f.Name).NoOptDefVal = f.NoOptDefVal
	})
	if fs.Parse(rest) != nil || fs.NArg() == 0 {
		return ""
	}
	return fs.Arg(0)
}

// instanceCompletions offers each registered instance once: its ID, with
// its name as the description. An unreadable registry completes to nothing.
func (a *app) instanceCompletions(cmd *cobra.Command) []cobra.Completion {
	reg := a.completionRegistry(cmd)
	if reg == nil {
		return nil
	}
	var out []cobra.Completion
	for _, inst := range reg.Sorted() {
		out = append(out, cobra.CompletionWithDesc(inst.ID, inst.Name))
	}
	return out
}

// argumentCompletions completes an instance argument, which an id or a name
// selects: the ids that begin with what is typed, or, when none does, the
// names that begin with it, since shells offer only words that begin with
// what is typed.
func (a *app) argumentCompletions(cmd *cobra.Command, toComplete string) []cobra.Completion {
	var out []cobra.Completion
	for _, byID := range [](func(*cobra.Command) []cobra.Completion){a.instanceCompletions, a.nameCompletions} {
		for _, c := range byID(cmd) {
			if word, _, _ := strings.Cut(c, "\t"); strings.HasPrefix(word, toComplete) {
				out = append(out, c)
			}
		}
		if len(out) > 0 {
			break
		}
	}
	return out
}

// nameCompletions offers each instance name once, with the IDs that have it
// as the description.
func (a *app) nameCompletions(cmd *cobra.Command) []cobra.Completion {
	reg := a.completionRegistry(cmd)
	if reg == nil {
		return nil
	}
	ids := reg.ByName()
	names := slices.Sorted(maps.Keys(ids))
	out := make([]cobra.Completion, 0, len(names))
	for _, name := range names {
		out = append(out, cobra.CompletionWithDesc(name, strings.Join(ids[name], ", ")))
	}
	return out
}

// completeNames registers completion for the flags of cmd that name a
// processor, template or group, from kato.toml and the registry.
func (a *app) completeNames(cmd *cobra.Command) {
	for flag, names := range map[string]func(*cobra.Command) []string{
		"processor": a.processorNames,
		"template":  a.templateNames,
		"group":     a.groupNames,
	} {
		if cmd.Flags().Lookup(flag) == nil {
			continue
		}
		cmd.RegisterFlagCompletionFunc(flag, func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return names(cmd), cobra.ShellCompDirectiveNoFileComp
		})
	}
}

// processorNames are the named processors of kato.toml, [processors.NAME].
func (a *app) processorNames(cmd *cobra.Command) []string {
	if cfg := a.completionConfig(cmd); cfg != nil {
		return slices.Sorted(maps.Keys(cfg.Processors))
	}
	return nil
}

// templateNames are the templates of kato.toml, [templates.NAME].
func (a *app) templateNames(cmd *cobra.Command) []string {
	if cfg := a.completionConfig(cmd); cfg != nil {
		return slices.Sorted(maps.Keys(cfg.Templates))
	}
	return nil
}

// groupNames are the groups the registered instances are in.
func (a *app) groupNames(cmd *cobra.Command) []string {
	reg := a.completionRegistry(cmd)
	if reg == nil {
		return nil
	}
	return reg.MemberGroups()
}

// completionConfig is kato.toml for a completion; nil when it cannot be
// read, which completes to nothing.
func (a *app) completionConfig(cmd *cobra.Command) *config.Config {
	if a.resolvePaths(cmd.Flags()) != nil {
		return nil
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return nil
	}
	return cfg
}

// completionRegistry is the registry for a completion; nil when it cannot
// be read, which completes to nothing.
func (a *app) completionRegistry(cmd *cobra.Command) *config.Registry {
	if a.resolvePaths(cmd.Flags()) != nil {
		return nil
	}
	reg, err := config.OpenRegistry(a.registryPath).Load()
	if err != nil {
		return nil
	}
	return reg
}

// geteuid is the effective user ID, which decides what a refusal means; a
// variable so that tests can be the user they need.
var geteuid = os.Geteuid

// connect connects to the scope's systemd. --user as root fails where root
// has no user manager of its own, with the bus library's words (no
// dbus-launch): the error then says what --user is for.
func (a *app) connect(ctx context.Context) (*supervisor.DBus, error) {
	sd, err := supervisor.Connect(ctx, a.paths.User)
	if err != nil && a.paths.User && geteuid() == 0 {
		return nil, fmt.Errorf("%w\n--user is for a user without root, to run their own instances on their systemd user manager; as root, leave --user out: root manages the system's instances (kato@ID.service) itself", err)
	}
	return sd, err
}

// explain adds to err what to do about it when it is a refusal a normal
// user meets in the system scope: a file of /etc/kato or /var/lib/kato it
// may not read or write, or systemd refusing to manage the system's units.
func (a *app) explain(err error) error {
	if err == nil || a.user || geteuid() == 0 {
		return err
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, supervisor.ErrAccessDenied) {
		return fmt.Errorf("%w\nthe system's instances are managed as root: run it with sudo; or add --user to run your own instances on your systemd user manager, without root", err)
	}
	return err
}
