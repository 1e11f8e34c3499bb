package cliguess

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// tree is a small command tree as kato-manager builds its own: the root
// and a parent set Args and word unknown commands themselves.
func tree() (root, queue, stop *cobra.Command) {
	root = &cobra.Command{Use: "tool", Args: cobra.ArbitraryArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	stop = &cobra.Command{Use: "stop", RunE: func(*cobra.Command, []string) error { return nil }}
	stop.Flags().String("name", "", "")
	stop.Flags().String("id", "", "")
	stop.Flags().Bool("all", false, "")
	stop.Flags().String("secret", "", "")
	stop.Flags().MarkHidden("secret")
	queue = &cobra.Command{Use: "queue", Args: cobra.ArbitraryArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	for _, name := range []string{"list", "stats", "delete"} {
		queue.AddCommand(&cobra.Command{Use: name, RunE: func(*cobra.Command, []string) error { return nil }})
	}
	root.AddCommand(stop, queue)
	return root, queue, stop
}

// run runs args on a new tree with FlagError as its flag error function.
func run(args ...string) error {
	root, _, _ := tree()
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return FlagError(root, cmd, args, err) })
	root.SetArgs(args)
	root.SilenceErrors, root.SilenceUsage = true, true
	_, err := root.ExecuteC()
	return err
}

func TestFlagError(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a misspelt flag", []string{"stop", "--nmae", "x"},
			"unknown flag: --nmae; did you mean --name?; run `tool stop --help`"},
		{"a flag near none", []string{"stop", "--zzzzzz"},
			"unknown flag: --zzzzzz; run `tool stop --help`"},
		{"a hidden flag is never offered", []string{"stop", "--secrt", "x"},
			"unknown flag: --secrt; run `tool stop --help`"},
		{"a misspelt command before a flag of another", []string{"stpo", "--id", "a"},
			"unknown command \"stpo\"; did you mean stop?; run `tool --help`"},
		{"a misspelt subcommand before a flag", []string{"queue", "lsit", "--all"},
			"unknown queue subcommand \"lsit\": must be delete, list or stats; did you mean list?; run `tool queue --help`"},
		{"a shorthand is left as pflag words it", []string{"stop", "-q"},
			"unknown shorthand flag: 'q' in -q"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("%q: %v, want %s", tc.args, err, tc.want)
			}
		})
	}
}

func TestFlagErrorKeepsTheError(t *testing.T) {
	root, _, stop := tree()
	bad := errors.New("bad")
	if err := FlagError(root, stop, []string{"stop", "--x"}, bad); !errors.Is(err, bad) {
		t.Errorf("FlagError lost the error it was given: %v", err)
	}
}

func TestUnknownCommand(t *testing.T) {
	root, queue, _ := tree()
	if got, want := UnknownCommand(root, "command", "sotp").Error(), "unknown command \"sotp\"; did you mean stop?; run `tool --help`"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got, want := UnknownCommand(queue, "queue subcommand", "zzz").Error(), "unknown queue subcommand \"zzz\": must be delete, list or stats; run `tool queue --help`"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, c := range queue.Commands() {
		c.Hidden = c.Name() == "stats"
	}
	if got := SubcommandNames(queue); !slices.Equal(got, []string{"delete", "list"}) {
		t.Errorf("SubcommandNames with stats hidden: %q", got)
	}
}

// complete asks cmd's tree for the completions of args, as a shell does.
func complete(t *testing.T, root *cobra.Command, args ...string) []string {
	t.Helper()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[:len(lines)-1] // the last is cobra's directive
}

func TestCompletions(t *testing.T) {
	root, _, stop := tree()
	ids := func(*cobra.Command) []cobra.Completion { return []string{"a1\tMain", "b2\tOther"} }
	names := func(*cobra.Command) []cobra.Completion { return []string{"Main\ta1", "Other\tb2"} }
	CompleteArgument(stop, ids, names)
	CompleteFlags(stop, map[string]Values{"id": ids, "name": names, "group": ids})
	if stop.Flags().Lookup("group") != nil {
		t.Fatal("CompleteFlags added a flag")
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"stop", ""}, []string{"a1\tMain", "b2\tOther"}},
		{[]string{"stop", "b"}, []string{"b2\tOther"}},
		{[]string{"stop", "O"}, []string{"Other\tb2"}},
		{[]string{"stop", "z"}, []string{}},
		{[]string{"stop", "a1", ""}, []string{}},
		{[]string{"stop", "--name", ""}, []string{"Main\ta1", "Other\tb2"}},
		{[]string{"stop", "--id", ""}, []string{"a1\tMain", "b2\tOther"}},
	} {
		got := complete(t, root, tc.args...)
		if len(got) == 1 && got[0] == "" {
			got = []string{}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("completion of %q: %q, want %q", tc.args, got, tc.want)
		}
	}
}
