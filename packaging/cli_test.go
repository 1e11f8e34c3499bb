package packaging

import (
	"context"
	_ "embed"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests hold the man page and the shell completions to what
// kato-manager itself says it accepts: every command and flag its help
// prints must be documented and completed, and nothing else.

// command is one command of kato-manager with its flags, as its help
// prints them.
type command struct {
	path  string   // "start", "workers scale"
	flags []string // "--id", "-n"
}

// cli is what kato-manager's help says it accepts.
type cli struct {
	globals  []string  // the flags before the command
	commands []command // in the order of the help
}

// tops returns the first word of every command, once each.
func (c cli) tops() []string {
	var out []string
	for _, cmd := range c.commands {
		top, _, _ := strings.Cut(cmd.path, " ")
		if !slices.Contains(out, top) {
			out = append(out, top)
		}
	}
	return out
}

// subs returns the subcommands of top.
func (c cli) subs(top string) []string {
	var out []string
	for _, cmd := range c.commands {
		if t, sub, ok := strings.Cut(cmd.path, " "); ok && t == top {
			out = append(out, sub)
		}
	}
	return out
}

var flagLine = regexp.MustCompile(`^\s+(?:(-[a-zA-Z]), )?(--[a-z][a-z0-9-]*)`)

// readCLI builds kato-manager and reads its help and every command's.
func readCLI(t *testing.T) cli {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kato-manager")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/kato-manager").CombinedOutput(); err != nil {
		t.Fatalf("build kato-manager: %v\n%s", err, out)
	}
	help := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kato-manager %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var c cli
	for _, line := range strings.Split(help("--help"), "\n") {
		if rest, ok := strings.CutPrefix(line, "Global flags:"); ok {
			c.globals = append(regexp.MustCompile(`--[a-z][a-z-]*`).FindAllString(rest, -1), "--help", "-h")
			continue
		}
		// "  start          register…" or "  workers start|stop|scale N|…"
		if !strings.HasPrefix(line, "  ") || len(line) < 3 || line[2] < 'a' || line[2] > 'z' || strings.HasPrefix(line, "  kato-manager ") {
			continue
		}
		name, rest, _ := strings.Cut(line[2:], " ")
		if rest == "" || strings.HasPrefix(rest, " ") {
			c.commands = append(c.commands, command{path: name})
			continue
		}
		spec, _, _ := strings.Cut(rest, "  ")
		for _, sub := range strings.Split(spec, "|") {
			word, _, _ := strings.Cut(sub, " ")
			c.commands = append(c.commands, command{path: name + " " + word})
		}
	}
	if len(c.globals) < 3 || len(c.commands) < 10 {
		t.Fatalf("kato-manager --help: read globals %v and commands %v; has its layout changed?", c.globals, c.commands)
	}
	for i, cmd := range c.commands {
		out := help(append(strings.Fields(cmd.path), "--help")...)
		if !strings.Contains(out, "Usage: kato-manager "+cmd.path) {
			t.Fatalf("kato-manager %s --help:\n%s", cmd.path, out)
		}
		_, flags, _ := strings.Cut(out, "\nFlags:\n")
		for _, l := range strings.Split(flags, "\n") {
			if m := flagLine.FindStringSubmatch(l); m != nil {
				if m[1] != "" {
					c.commands[i].flags = append(c.commands[i].flags, m[1])
				}
				c.commands[i].flags = append(c.commands[i].flags, m[2])
			}
		}
	}
	return c
}

//go:embed kato-manager.1
var manPageSource string

// manSections returns the man page's .SS sections by the command they
// document ("workers scale" for `.SS "workers scale N"`), and the text of the
// GLOBAL FLAGS section under "".
func manSections(t *testing.T) map[string]string {
	t.Helper()
	sections := map[string]string{}
	var name string
	var text strings.Builder
	flush := func() {
		if name != "" || text.Len() > 0 {
			sections[name] += text.String()
		}
		text.Reset()
	}
	inGlobals := false
	for _, line := range strings.Split(manPageSource, "\n") {
		switch {
		case strings.HasPrefix(line, ".SH "):
			flush()
			name = ""
			inGlobals = line == ".SH GLOBAL FLAGS"
			continue
		case strings.HasPrefix(line, `.SS "`):
			flush()
			header := strings.Trim(strings.TrimPrefix(line, ".SS "), `"`)
			var words []string
			for _, w := range strings.Fields(header) {
				if !regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(w) {
					break
				}
				words = append(words, w)
			}
			name = strings.Join(words, " ")
			if name == "" {
				t.Fatalf("man page section %q names no command", line)
			}
			inGlobals = false
			continue
		}
		if name != "" || inGlobals {
			text.WriteString(line + "\n")
		}
	}
	flush()
	return sections
}

// manFlag is how the man page writes a flag: with escaped hyphens, not
// followed by more of a name.
func manFlag(flag string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(strings.ReplaceAll(flag, "-", `\-`)) + `(?:$|[^a-zA-Z0-9\\])`)
}

func TestManPageCoversCLI(t *testing.T) {
	c := readCLI(t)
	sections := manSections(t)
	for _, g := range c.globals {
		if !manFlag(g).MatchString(sections[""]) {
			t.Errorf("GLOBAL FLAGS does not document %s", g)
		}
	}
	var paths []string
	for _, cmd := range c.commands {
		paths = append(paths, cmd.path)
		text, ok := sections[cmd.path]
		if !ok {
			t.Errorf("no section .SS \"%s…\" for the command %s", cmd.path, cmd.path)
			continue
		}
		for _, f := range cmd.flags {
			if !manFlag(f).MatchString(text) {
				t.Errorf("section %s does not document %s", cmd.path, f)
			}
		}
		documented := regexp.MustCompile(`\\-\\-[a-z][a-z\\-]*`).FindAllString(text, -1)
		for _, d := range documented {
			flag := strings.ReplaceAll(d, `\-`, "-")
			if !slices.Contains(cmd.flags, flag) && !slices.Contains(c.globals, flag) && !mentionsOther(c, flag) {
				t.Errorf("section %s documents %s, which no command has", cmd.path, flag)
			}
		}
	}
	for name := range sections {
		if name != "" && !slices.Contains(paths, name) {
			t.Errorf("man page documents %q, which kato-manager does not have", name)
		}
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", "kato-manager.1")
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff warns about the man page: %v\n%s", err, out)
		}
	}
}

// mentionsOther reports whether flag belongs to some command: a section may
// refer to another command's flag.
func mentionsOther(c cli, flag string) bool {
	for _, cmd := range c.commands {
		if slices.Contains(cmd.flags, flag) {
			return true
		}
	}
	return false
}

// completer completes a command line, ending in the word being completed,
// the way a shell offers the candidates on TAB.
type completer func(t *testing.T, lines []string) [][]string

func bashCompleter(t *testing.T, lines []string) [][]string {
	t.Helper()
	bash := needTool(t, "bash")
	var out [][]string
	for _, line := range lines {
		words := strings.Split(line, " ")
		script := `source completion/kato-manager.bash
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
_kato_manager
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, append([]string{"-c", script, "bash"}, words...)...)
		cmd.Env = append(os.Environ(), "KATO_REGISTRY=/nonexistent")
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completion of %q: %v", line, err)
		}
		out = append(out, strings.Fields(string(got)))
	}
	return out
}

// zshDriver types each line into an interactive zsh, presses TAB, and
// records what the completion system offers, one file per line.
const zshDriver = `
zmodload zsh/zpty || exit 1
local fp=$1 out=$2; shift 2
zpty z zsh -f -i
zpty -w z "PROMPT=''; fpath=($fp \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z 'compadd() { builtin compadd -O __hits "$@"; print -rl -- $__hits >>$__out; builtin compadd "$@" }'
local -i i=0
local line got
for line in "$@"; do
  (( i++ ))
  zpty -w z "__out=$out/$i"
  zpty -w z "$line"$'\t'
  zpty -w z $'\C-u''print -r -- "__DO""NE_'$i'__"'
  zpty -r -m z got "*__DONE_${i}__*" || exit 1
done
zpty -d z
`

func zshCompleter(t *testing.T, lines []string) [][]string {
	t.Helper()
	zsh := needTool(t, "zsh")
	dir := t.TempDir()
	fpath, out := filepath.Join(dir, "functions"), filepath.Join(dir, "out")
	for _, d := range []string{fpath, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(fpath, "_kato-manager"), readFile(t, "completion/_kato-manager"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, zsh, append([]string{"-f", "-c", zshDriver, "zsh", fpath, out}, lines...)...)
	cmd.Env = append(os.Environ(), "KATO_REGISTRY=/nonexistent")
	if got, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zsh completion: %v\n%s", err, got)
	}
	var results [][]string
	for i := range lines {
		data, err := os.ReadFile(filepath.Join(out, strconv.Itoa(i+1)))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var words []string
		for _, w := range strings.Fields(string(data)) {
			if !slices.Contains(words, w) {
				words = append(words, w)
			}
		}
		results = append(results, words)
	}
	return results
}

func TestCompletionsCoverCLI(t *testing.T) {
	c := readCLI(t)
	for _, tc := range []struct {
		shell    string
		complete completer
	}{
		{"bash", bashCompleter},
		{"zsh", zshCompleter},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			type query struct {
				line string
				want []string // exactly these, besides --help and -h
			}
			queries := []query{
				{"kato-manager ", c.tops()},
				{"kato-manager -", c.globals},
			}
			for _, top := range c.tops() {
				if subs := c.subs(top); len(subs) > 0 {
					queries = append(queries, query{"kato-manager " + top + " ", subs})
				}
			}
			for _, cmd := range c.commands {
				queries = append(queries, query{"kato-manager " + cmd.path + " -", cmd.flags})
			}
			var lines []string
			for _, q := range queries {
				lines = append(lines, q.line)
			}
			got := tc.complete(t, lines)
			for i, q := range queries {
				for _, w := range q.want {
					if !slices.Contains(got[i], w) {
						t.Errorf("%q does not offer %s; offers %v", q.line, w, got[i])
					}
				}
				for _, w := range got[i] {
					if !slices.Contains(q.want, w) && w != "--help" && w != "-h" {
						t.Errorf("%q offers %s, which kato-manager does not have there", q.line, w)
					}
				}
			}
		})
	}
}
