package main

import (
	"embed"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// helpFiles are the commands' descriptions and examples, one text file each,
// by the command's path below the root (help/workers/start.txt), the root's
// in help/kato-manager.txt: content for the help and the man pages, kept out
// of the code.
//
//go:embed help
var helpFiles embed.FS

// helpText is the text of the file of a command's path with ext, without
// the file's last newline; "" when it has none.
func helpText(path, ext string) string {
	b, err := helpFiles.ReadFile("help/" + strings.ReplaceAll(path, " ", "/") + ext)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// describe gives every command of the tree its long help and examples, and
// its help the flag list of flagUsages.
func describe(root *cobra.Command) {
	cobra.AddTemplateFunc("flagUsages", flagUsages)
	tmpl := root.UsageTemplate()
	tmpl = strings.ReplaceAll(tmpl, ".LocalFlags.FlagUsages", "flagUsages .LocalFlags")
	tmpl = strings.ReplaceAll(tmpl, ".InheritedFlags.FlagUsages", "flagUsages .InheritedFlags")
	root.SetUsageTemplate(tmpl)
	forEach(root, func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if long := helpText(path, ".txt"); long != "" {
			c.Long = long
		}
		c.Example = helpText(path, ".examples.txt")
	})
}

// forEach calls do with c and every command below it.
func forEach(c *cobra.Command, do func(*cobra.Command)) {
	do(c)
	for _, sub := range c.Commands() {
		forEach(sub, do)
	}
}

// flagUsages is the flag list of a help: pflag's, but a flag that takes no
// value is shown as --flag, not --flag[=true|false].
func flagUsages(fs *pflag.FlagSet) string {
	plain := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
	plain.SortFlags = fs.SortFlags
	fs.VisitAll(func(f *pflag.Flag) {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			c := *f
			c.Value = plainValue{f.Value}
			f = &c
		}
		plain.AddFlag(f)
	})
	return plain.FlagUsages()
}

// plainValue hides a Value's IsBoolFlag from pflag's usage, which prints
// [=true|false] after a flag that has it; its NoOptDefVal still says that
// the flag takes no value.
type plainValue struct{ pflag.Value }
