package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/cliguess"
	"github.com/kato-manager/kato-manager/supervisor"
)

// flagError is the usage error of a command line whose flags do not parse,
// with the flag or command it was probably meant to have.
func (a *app) flagError(root *cobra.Command) func(*cobra.Command, error) error {
	return func(cmd *cobra.Command, err error) error {
		return usageError{cliguess.FlagError(root, cmd, a.args, err)}
	}
}

// withInstances completes cmd's argument and its --id and --name flags, where
// it has them, from the registry: an argument to the ids that begin with what
// is typed, or, when none does, the names.
func (a *app) withInstances(cmd *cobra.Command) *cobra.Command {
	cliguess.CompleteArgument(cmd, a.instanceCompletions, a.nameCompletions)
	cliguess.CompleteFlags(cmd, map[string]cliguess.Values{"id": a.instanceCompletions, "name": a.nameCompletions})
	return cmd
}

// instanceCompletions offers each registered instance once: its ID, with
// its name as the description. An unreadable registry completes to nothing.
func (a *app) instanceCompletions(cmd *cobra.Command) []cobra.Completion {
	var out []cobra.Completion
	for _, inst := range a.completionRegistry(cmd).Sorted() {
		out = append(out, cobra.CompletionWithDesc(inst.ID, inst.Name))
	}
	return out
}

// nameCompletions offers each instance name once, with the IDs that have it
// as the description.
func (a *app) nameCompletions(cmd *cobra.Command) []cobra.Completion {
	ids := a.completionRegistry(cmd).ByName()
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
	cliguess.CompleteFlags(cmd, map[string]cliguess.Values{"processor": a.processorNames, "template": a.templateNames, "group": a.groupNames})
}

// processorNames are the named processors of kato.toml, [processors.NAME].
func (a *app) processorNames(cmd *cobra.Command) []cobra.Completion {
	return slices.Sorted(maps.Keys(a.completionConfig(cmd).Processors))
}

// templateNames are the templates of kato.toml, [templates.NAME].
func (a *app) templateNames(cmd *cobra.Command) []cobra.Completion {
	return slices.Sorted(maps.Keys(a.completionConfig(cmd).Templates))
}

// groupNames are the groups the registered instances are in.
func (a *app) groupNames(cmd *cobra.Command) []cobra.Completion {
	return a.completionRegistry(cmd).MemberGroups()
}

// completionConfig is kato.toml for a completion; an empty one when it
// cannot be read, which completes to nothing.
func (a *app) completionConfig(cmd *cobra.Command) *config.Config {
	if a.resolvePaths(cmd.Flags()) == nil {
		if cfg, err := a.loadConfig(); err == nil {
			return cfg
		}
	}
	return &config.Config{}
}

// completionRegistry is the registry for a completion; an empty one when
// it cannot be read, which completes to nothing.
func (a *app) completionRegistry(cmd *cobra.Command) *config.Registry {
	if a.resolvePaths(cmd.Flags()) == nil {
		if reg, err := config.OpenRegistry(a.registryPath).Load(); err == nil {
			return reg
		}
	}
	return &config.Registry{}
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
