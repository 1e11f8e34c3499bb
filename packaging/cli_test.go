package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// These tests hold the man pages and the shell completions that
// kato-manager writes from its command tree to what its help says it
// accepts: every command and flag must be documented and completed, and
// nothing else; and the completions offer the registry's instances.

// command is one command of kato-manager with its flags, as its help
// prints them.
type command struct {
	path  string   // "start", "workers scale"
	flags []string // "--id", "-n"
}

// cli is what kato-manager's help says it accepts.
type cli struct {
	bin      string    // the kato-manager the help is of
	globals  []string  // the flags every command takes
	commands []command // every command below the root, parents first
}

// tops returns the commands directly below the root.
func (c cli) tops() []string {
	var out []string
	for _, cmd := range c.commands {
		if !strings.Contains(cmd.path, " ") {
			out = append(out, cmd.path)
		}
	}
	return out
}

// subs returns the subcommands of path.
func (c cli) subs(path string) []string {
	var out []string
	for _, cmd := range c.commands {
		if parent, sub, ok := strings.Cut(cmd.path, " "); ok && parent == path && !strings.Contains(sub, " ") {
			out = append(out, sub)
		}
	}
	return out
}

var (
	flagLine    = regexp.MustCompile(`^\s+(?:(-[a-zA-Z]), )?(--[a-z][a-z0-9-]*)`)
	commandLine = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s+\S`)
)

// buildKatoManager compiles kato-manager with the given version.
func buildKatoManager(t *testing.T, version string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kato-manager")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", bin, "../cmd/kato-manager")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kato-manager: %v\n%s", err, out)
	}
	return bin
}

// sections splits a help text into its sections by their title line
// ("Flags:", "Instances:").
func sections(help string) map[string][]string {
	out := map[string][]string{}
	title := ""
	for _, l := range strings.Split(help, "\n") {
		if l != "" && !strings.HasPrefix(l, " ") && strings.HasSuffix(l, ":") {
			title = l
			continue
		}
		if l != "" {
			out[title] = append(out[title], l)
		}
	}
	return out
}

// readCLI builds kato-manager and reads its help and every command's,
// down the tree.
func readCLI(t *testing.T) cli {
	t.Helper()
	c := cli{bin: buildKatoManager(t, "dev")}
	help := func(path string) map[string][]string {
		t.Helper()
		out, err := exec.Command(c.bin, append(strings.Fields(path), "--help")...).CombinedOutput()
		if err != nil {
			t.Fatalf("kato-manager %s --help: %v\n%s", path, err, out)
		}
		return sections(string(out))
	}
	flags := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if m := flagLine.FindStringSubmatch(l); m != nil {
				if m[1] != "" {
					out = append(out, m[1])
				}
				out = append(out, m[2])
			}
		}
		return out
	}
	var walk func(path string)
	walk = func(path string) {
		s := help(path)
		if path == "" {
			c.globals = flags(s["Flags:"])
		} else {
			c.commands = append(c.commands, command{path: path, flags: flags(s["Flags:"])})
		}
		for title, lines := range s {
			if !strings.HasSuffix(title, "Commands:") && title != "Instances:" && !strings.HasPrefix(title, "KG worker pool") {
				continue
			}
			for _, l := range lines {
				if m := commandLine.FindStringSubmatch(l); m != nil && m[1] != "help" {
					walk(strings.TrimSpace(path + " " + m[1]))
				}
			}
		}
	}
	walk("")
	if !slices.Contains(c.globals, "--config") || len(c.tops()) < 12 || len(c.subs("workers")) != 6 {
		t.Fatalf("kato-manager --help: read globals %v and commands %v; has its layout changed?", c.globals, c.commands)
	}
	return c
}

// inheritedFlags are the root's flags every command takes.
var inheritedFlags = []string{"--config", "--registry", "--user", "--host", "--no-color"}

// manFlag is how a man page writes a flag: its hyphens escaped or not, not
// followed by more of a name.
func manFlag(flag string) *regexp.Regexp {
	return regexp.MustCompile(strings.ReplaceAll(regexp.QuoteMeta(flag), "-", `\\?-`) + `(?:$|[^a-zA-Z0-9\\-]|\\[^-])`)
}

// TestManPagesCoverCLI: one page per command, each documenting the
// command's flags and the global ones, and groff has nothing to say.
func TestManPagesCoverCLI(t *testing.T) {
	c := readCLI(t)
	dir := t.TempDir()
	if out, err := exec.Command(c.bin, "__man", dir).CombinedOutput(); err != nil {
		t.Fatalf("kato-manager __man: %v\n%s", err, out)
	}
	want := map[string]command{"kato-manager.1": {flags: c.globals}}
	for _, cmd := range c.commands {
		want["kato-manager-"+strings.ReplaceAll(cmd.path, " ", "-")+".1"] = cmd
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		if _, ok := want[filepath.Base(p)]; !ok {
			t.Errorf("man page %s documents no command of kato-manager", filepath.Base(p))
		}
	}
	groff, _ := exec.LookPath("groff")
	for name, cmd := range want {
		page := string(readFile(t, filepath.Join(dir, name)))
		if !strings.HasPrefix(page, ".nh\n.TH ") || !strings.Contains(page, ".SH NAME\n") {
			t.Errorf("%s is not a man page:\n%s", name, page)
		}
		for _, f := range append(slices.Clone(cmd.flags), inheritedFlags...) {
			if !manFlag(f).MatchString(page) {
				t.Errorf("%s does not document %s", name, f)
			}
		}
		if groff != "" {
			if out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", filepath.Join(dir, name)).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("groff warns about %s: %v\n%s", name, err, out)
			}
		}
	}
}

// completer completes command lines, each ending in the word being
// completed, the way a shell offers the candidates on TAB. The scripts are
// kato-manager's own, and ask it (on PATH) for the candidates.
type completer func(t *testing.T, c cli, env []string, lines []string) [][]string

// shellEnv is the environment of a completing shell: kato-manager on PATH
// and the registry given.
func shellEnv(c cli, registry string) []string {
	return append(os.Environ(), "PATH="+filepath.Dir(c.bin)+string(os.PathListSeparator)+os.Getenv("PATH"), "KATO_REGISTRY="+registry)
}

func writeScript(t *testing.T, c cli, shell, dir, name string) string {
	t.Helper()
	script, err := exec.Command(c.bin, "completion", shell).Output()
	if err != nil {
		t.Fatalf("kato-manager completion %s: %v", shell, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func bashCompleter(t *testing.T, c cli, env []string, lines []string) [][]string {
	t.Helper()
	bash := needTool(t, "bash")
	const framework = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(framework); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; the bash-completion package provides it", framework)
		}
		t.Skipf("%s is missing", framework)
	}
	script := writeScript(t, c, "bash", t.TempDir(), "kato-manager")
	var out [][]string
	for _, line := range lines {
		words := strings.Split(line, " ")
		driver := `source ` + framework + `; source "$SCRIPT"
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
__start_kato-manager kato-manager "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, append([]string{"-c", driver, "bash"}, words...)...)
		cmd.Env = append(env, "SCRIPT="+script)
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

func zshCompleter(t *testing.T, c cli, env []string, lines []string) [][]string {
	t.Helper()
	zsh := needTool(t, "zsh")
	dir := t.TempDir()
	fpath, out := filepath.Join(dir, "functions"), filepath.Join(dir, "out")
	for _, d := range []string{fpath, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeScript(t, c, "zsh", fpath, "_kato-manager")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, zsh, append([]string{"-f", "-c", zshDriver, "zsh", fpath, out}, lines...)...)
	cmd.Env = env
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

func fishCompleter(t *testing.T, c cli, env []string, lines []string) [][]string {
	t.Helper()
	fish := needTool(t, "fish")
	script := writeScript(t, c, "fish", t.TempDir(), "kato-manager.fish")
	var out [][]string
	for _, line := range lines {
		cmd := exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, script, line)
		cmd.Env = env
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("fish completion of %q: %v", line, err)
		}
		var words []string
		for _, l := range strings.Split(strings.TrimSpace(string(got)), "\n") {
			if w, _, _ := strings.Cut(l, "\t"); w != "" {
				words = append(words, w)
			}
		}
		out = append(out, words)
	}
	return out
}

// writeRegistry writes a registry with the given instances, ID to name.
func writeRegistry(t *testing.T, instances map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "instances.toml")
	now := time.Now().UTC().Truncate(time.Second)
	port := 9000
	err := config.OpenRegistry(path).Update(func(r *config.Registry) error {
		for id, name := range instances {
			port += 2
			r.Instances[id] = &config.Instance{ID: id, Name: name, Unit: "kato@" + id + ".service", APIPort: port, ZMQPort: port + 1,
				Parameters: config.DefaultParameters(), Network: config.NetworkHost, Created: now, Updated: now}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompletionsCoverCLI(t *testing.T) {
	c := readCLI(t)
	registry := writeRegistry(t, map[string]string{"processor-1": "Main", "processor-2": "Secondary"})
	// An instance is offered once, by its id, its name as the description;
	// a word that begins no id but a name offers the name.
	instances := []string{"processor-1", "processor-2"}
	for _, tc := range []struct {
		shell    string
		complete completer
	}{
		{"bash", bashCompleter},
		{"zsh", zshCompleter},
		{"fish", fishCompleter},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			type query struct {
				line string
				want []string // exactly these, besides --help and -h
			}
			queries := []query{
				{"kato-manager ", c.tops()},
				{"kato-manager stop ", instances},
				{"kato-manager logs proc", []string{"processor-1", "processor-2"}},
				{"kato-manager restart S", []string{"Secondary"}},
				{"kato-manager stop --id ", []string{"processor-1", "processor-2"}},
				{"kato-manager stop --name ", []string{"Main", "Secondary"}},
			}
			for _, top := range c.tops() {
				if subs := c.subs(top); len(subs) > 0 {
					queries = append(queries, query{"kato-manager " + top + " ", subs})
				}
			}
			for _, cmd := range c.commands {
				if !strings.HasPrefix(cmd.path, "completion") {
					queries = append(queries, query{"kato-manager " + cmd.path + " --", append(slices.Clone(cmd.flags), inheritedFlags...)})
				}
			}
			var lines []string
			for _, q := range queries {
				lines = append(lines, q.line)
			}
			got := tc.complete(t, c, shellEnv(c, registry), lines)
			for i, q := range queries {
				for _, w := range q.want {
					if strings.HasPrefix(w, "--") || !strings.HasSuffix(q.line, " --") {
						if !slices.Contains(got[i], w) {
							t.Errorf("%q does not offer %s; offers %v", q.line, w, got[i])
						}
					}
				}
				for _, w := range got[i] {
					if !slices.Contains(q.want, w) && w != "--help" && w != "-h" && w != "help" {
						t.Errorf("%q offers %s, which kato-manager does not have there", q.line, w)
					}
				}
			}
		})
	}
}
