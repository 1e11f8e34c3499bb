// Package cliguess words what a command line of a cobra command tree was
// probably meant to say: an unknown command or flag with the nearest ones
// the tree has, and the values a shell completes for an argument or a flag.
// What the values are (instances, groups, ...) is the caller's.
package cliguess

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/internal/suggest"
)

// FlagError is the error of the command line args, whose flags do not
// parse for cmd, a command of the tree root: the command it was probably
// meant to have, or the flag.
//
// Cobra looks for an unknown command before it parses the flags only for a
// command whose Args is nil (its legacyArgs, in Find). A tree whose root
// and parents set Args, to word that error themselves in RunE, which runs
// after the flags are parsed, fails `kato-manager strat --id a` on --id,
// which the root does not have, before the root sees "strat". So a flag
// error on a command that has subcommands is first checked for a
// positional argument, which can only be a command it does not have.
func FlagError(root, cmd *cobra.Command, args []string, err error) error {
	if cmd.HasAvailableSubCommands() {
		if name := strayCommand(root, cmd, args); name != "" {
			what := "command"
			if cmd.HasParent() {
				what = cmd.Name() + " subcommand"
			}
			return UnknownCommand(cmd, what, name)
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
	return err
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

// UnknownCommand is the error for a command or subcommand name that cmd
// does not have (what says which: "command", "queue subcommand"), with the
// ones it has and the nearest of them.
func UnknownCommand(cmd *cobra.Command, what, name string) error {
	msg := fmt.Sprintf("unknown %s %q", what, name)
	if cmd.HasParent() {
		msg += ": must be " + suggest.OrList(SubcommandNames(cmd))
	}
	cmd.SuggestionsMinimumDistance = 2
	if near := cmd.SuggestionsFor(name); len(near) > 0 {
		msg += fmt.Sprintf("; did you mean %s?", suggest.OrList(near))
	}
	return fmt.Errorf("%s; run `%s --help`", msg, cmd.CommandPath())
}

// SubcommandNames are the names of cmd's commands that the help lists.
func SubcommandNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

// Values are the completions a command offers when asked, read then (from
// a registry, a configuration file); nil when there are none or they
// cannot be read.
type Values func(cmd *cobra.Command) []cobra.Completion

// CompleteFlags makes each flag of cmd named in flags complete to its
// values, and never to file names. Flags cmd does not have are left out.
func CompleteFlags(cmd *cobra.Command, flags map[string]Values) {
	for flag, values := range flags {
		if cmd.Flags().Lookup(flag) == nil {
			continue
		}
		cmd.RegisterFlagCompletionFunc(flag, func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return values(cmd), cobra.ShellCompDirectiveNoFileComp
		})
	}
}

// CompleteArgument makes cmd's first positional argument complete to the
// first of sources that has values beginning with what is typed (ids, then
// names: shells offer only words that begin with what is typed), and its
// further arguments to nothing.
func CompleteArgument(cmd *cobra.Command, sources ...Values) {
	cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, values := range sources {
			for _, c := range values(cmd) {
				if word, _, _ := strings.Cut(c, "\t"); strings.HasPrefix(word, toComplete) {
					out = append(out, c)
				}
			}
			if len(out) > 0 {
				break
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
