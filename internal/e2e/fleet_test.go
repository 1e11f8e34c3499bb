package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// guideFleet is the multi-instance.yaml example of the KATO multi-instance
// guide, verbatim, kept beside the config package's tests.
var guideFleet = func() string {
	data, err := os.ReadFile("../../fleet/testdata/multi-instance.yaml")
	if err != nil {
		panic(err)
	}
	return string(data)
}()

// TestFleet drives apply, diff, export, templates and groups on one real
// systemd. Each subtest leaves no instance behind.
func TestFleet(t *testing.T) {
	m := bootMachine(t)
	conf := testbed.Config + `
[processors.broken]
command = ["/bin/false"]
generation = "b"

[templates.small]
max_predictions = 5
group = "tpl"
`
	if err := m.WriteFile("/etc/kato/kato.toml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	leftovers := func(t *testing.T) {
		if left, _ := filepath.Glob(filepath.Join(m.Root(), "/etc/systemd/system/kato-group@*.target.d/*")); len(left) != 0 {
			t.Fatalf("group drop-ins left after stop --all: %v", left)
		}
	}
	run := func(name string, f func(t *testing.T)) { m.subtest(t, name, f, leftovers) }
	write := func(name, content string) string {
		path := "/root/" + name
		if err := m.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// started is the unit's main process start, which a restart moves.
	started := func(unit string) string {
		m.t.Helper()
		s := strings.TrimSpace(m.must("systemctl", "show", "-P", "ExecMainStartTimestampMonotonic", unit))
		if s == "" || s == "0" {
			m.t.Fatalf("%s has not started", unit)
		}
		return s
	}
	env := func(port int) map[string]string { return m.envOf(fmt.Sprintf("http://127.0.0.1:%d/env", port)) }

	run("the guide's file, idempotence, one change, diff, export and prune", func(t *testing.T) {
		file := write("multi-instance.yaml", guideFleet)
		if r := m.km("diff", "-f", file); r.code != 1 || !strings.Contains(r.stdout, "+ sentiment-analyzer") || !strings.Contains(r.stdout, "plan: 2 to create, 0 to change (restart), 0 to remove, 0 unchanged") {
			t.Fatalf("diff before apply: %s", r)
		}
		out := m.mustKM("apply", "-f", file)
		if !strings.Contains(out, "applied "+file+": 2 created, 0 changed, 0 removed, 0 unchanged, 0 failed") {
			t.Errorf("apply: %s", out)
		}
		for id, port := range map[string]int{"sentiment-analyzer": 8001, "pattern-matcher": 8002} {
			if s := m.activeState("kato@" + id + ".service"); s != "active" {
				t.Fatalf("kato@%s.service is %s", id, s)
			}
			body, err := m.get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
			if err != nil || !strings.Contains(body, `"processor_id":"`+id+`"`) {
				t.Fatalf("health of %s: %q %v", id, body, err)
			}
		}
		if e := env(8001); e["MAX_PREDICTIONS"] != "50" || e["PROCESSOR_NAME"] != "Sentiment Analysis" || e["INDEXER_TYPE"] != "VI" {
			t.Errorf("sentiment-analyzer got %v", e)
		}
		a0, b0 := started("kato@sentiment-analyzer.service"), started("kato@pattern-matcher.service")

		// A second apply restarts nothing and says so.
		out = m.mustKM("apply", "-f", file)
		if !strings.Contains(out, "nothing to do") || !strings.Contains(out, "nothing restarted") {
			t.Errorf("second apply: %s", out)
		}
		if r := m.km("diff", "-f", file); r.code != 0 || !strings.Contains(r.stdout, "0 to create, 0 to change (restart), 0 to remove, 2 unchanged") {
			t.Errorf("diff after apply: %s", r)
		}
		if a, b := started("kato@sentiment-analyzer.service"), started("kato@pattern-matcher.service"); a != a0 || b != b0 {
			t.Errorf("a no-change apply restarted: %s→%s, %s→%s", a0, a, b0, b)
		}

		// One changed parameter restarts exactly that instance.
		changed := write("changed.yaml", strings.Replace(guideFleet, "max_predictions: 100", "max_predictions: 200", 1))
		r := m.km("diff", "-f", changed)
		if r.code != 1 || !strings.Contains(r.stdout, "~ pattern-matcher\n    max_predictions: 100 -> 200\n") || strings.Contains(r.stdout, "sentiment-analyzer") {
			t.Errorf("diff of one change: %s", r)
		}
		if r := m.km("apply", "--dry-run", "-f", changed); r.code != 1 || !strings.Contains(r.stdout, "~ pattern-matcher") {
			t.Errorf("apply --dry-run: %s", r)
		}
		if b := started("kato@pattern-matcher.service"); b != b0 {
			t.Errorf("diff or --dry-run restarted pattern-matcher")
		}
		out = m.mustKM("apply", "-f", changed)
		if !strings.Contains(out, "~ pattern-matcher changed and restarted") || !strings.Contains(out, "0 created, 1 changed, 0 removed, 1 unchanged, 0 failed") {
			t.Errorf("apply of one change: %s", out)
		}
		if a := started("kato@sentiment-analyzer.service"); a != a0 {
			t.Errorf("sentiment-analyzer restarted by a change to pattern-matcher")
		}
		if b := started("kato@pattern-matcher.service"); b == b0 {
			t.Errorf("pattern-matcher did not restart")
		}
		if e := env(8002); e["MAX_PREDICTIONS"] != "200" {
			t.Errorf("pattern-matcher runs with %v", e["MAX_PREDICTIONS"])
		}
		b1 := started("kato@pattern-matcher.service")

		// export → apply is a no-op, in every format.
		for _, format := range []string{"yaml", "json", "toml"} {
			exported := write("export."+format, m.mustKM("export", "--format", format))
			if r := m.km("diff", "-f", exported); r.code != 0 {
				t.Errorf("diff of the %s export: %s\n%s", format, r, m.readFile(exported))
			}
			if out := m.mustKM("apply", "-f", exported); !strings.Contains(out, "nothing to do") {
				t.Errorf("apply of the %s export: %s", format, out)
			}
		}
		if a, b := started("kato@sentiment-analyzer.service"), started("kato@pattern-matcher.service"); a != a0 || b != b1 {
			t.Errorf("applying an export restarted an instance")
		}

		// Prune: without --prune an instance the file leaves out stays.
		one := write("one.yaml", "instances:\n  - id: sentiment-analyzer\n    name: \"Sentiment Analysis\"\n    port: 8001\n    max_predictions: 50\n")
		if out := m.mustKM("apply", "-f", one); !strings.Contains(out, "nothing to do") {
			t.Errorf("apply of a subset without --prune: %s", out)
		}
		if r := m.km("diff", "--prune", "-f", one); r.code != 1 || !strings.Contains(r.stdout, "- pattern-matcher (port 8002)") {
			t.Errorf("diff --prune: %s", r)
		}
		out = m.mustKM("apply", "--prune", "-f", one)
		if !strings.Contains(out, "- pattern-matcher removed") || !strings.Contains(out, "1 removed") {
			t.Errorf("apply --prune: %s", out)
		}
		if rows := m.listJSON(); len(rows) != 1 || rows["sentiment-analyzer"] == nil {
			t.Errorf("after prune: %v", rows)
		}
		if s := m.activeState("kato@pattern-matcher.service"); s == "active" {
			t.Errorf("pruned instance is %s", s)
		}
		if m.exists("/etc/systemd/system/kato@pattern-matcher.service.d/kato-manager.conf") || m.exists("/etc/kato/instances/pattern-matcher.env") {
			t.Errorf("pruned instance's files are left")
		}
		if a := started("kato@sentiment-analyzer.service"); a != a0 {
			t.Errorf("prune restarted the instance it kept")
		}
	})

	run("JSON and TOML files, templates and overrides", func(t *testing.T) {
		file := write("fleet.json", `{
	"templates": {"t": {"max_predictions": 7, "recall_threshold": 0.3, "name": "From t"}},
	"instances": [
		{"id": "a", "port": 8101, "template": "t"},
		{"id": "b", "port": 8102, "template": "t", "max_predictions": 9, "name": "Own"},
		{"id": "c", "port": 8103, "template": "small", "max_seq_length": 12}
	]
}`)
		m.mustKM("apply", "-f", file)
		if e := env(8101); e["MAX_PREDICTIONS"] != "7" || e["RECALL_THRESHOLD"] != "0.3" || e["PROCESSOR_NAME"] != "From t" {
			t.Errorf("a: %v", e)
		}
		if e := env(8102); e["MAX_PREDICTIONS"] != "9" || e["RECALL_THRESHOLD"] != "0.3" || e["PROCESSOR_NAME"] != "Own" {
			t.Errorf("b: %v", e)
		}
		// kato.toml's template, with the guide's old name of a parameter.
		if e := env(8103); e["MAX_PREDICTIONS"] != "5" || e["MAX_PATTERN_LENGTH"] != "12" {
			t.Errorf("c: %v", e)
		}
		if g := m.listJSON()["c"]["group"]; g != "tpl" {
			t.Errorf("c's group from its template = %v", g)
		}
		toml := write("fleet.toml", "[[instances]]\nid = \"a\"\nport = 8101\ntemplate = \"t2\"\n\n[templates.t2]\nmax_predictions = 8\n")
		if r := m.km("diff", "-f", toml); r.code != 1 || !strings.Contains(r.stdout, "~ a\n") || !strings.Contains(r.stdout, "max_predictions: 7 -> 8") || !strings.Contains(r.stdout, "name: From t -> KatoProcessor") {
			t.Errorf("diff of the TOML file: %s", r)
		}
		// start --template: the flags override the template.
		m.mustKM("start", "--id", "d", "--port", "8104", "--template", "small", "--max-predictions", "11")
		if e := env(8104); e["MAX_PREDICTIONS"] != "11" {
			t.Errorf("d: %v", e)
		}
		if g := m.listJSON()["d"]["group"]; g != "tpl" {
			t.Errorf("d's group from its template = %v", g)
		}
		if r := m.km("start", "--id", "e", "--template", "nope"); r.code != 2 || !strings.Contains(r.stderr, "invalid --template nope: must name a [templates.NAME] of kato.toml: small") {
			t.Errorf("unknown template: %s", r)
		}
	})

	run("groups are systemd targets", func(t *testing.T) {
		file := write("groups.yaml", `instances:
  - {id: g1a, port: 8201, group: one}
  - {id: g1b, port: 8202, group: one}
  - {id: g2a, port: 8203, group: two}
`)
		m.mustKM("apply", "-f", file)
		if partOf := m.must("systemctl", "show", "-P", "PartOf", "kato@g1a.service"); !strings.Contains(partOf, "kato-group@one.target") {
			t.Errorf("g1a is PartOf %q", partOf)
		}
		if wants := m.must("systemctl", "show", "-P", "Wants", "kato-group@one.target"); !strings.Contains(wants, "kato@g1a.service") || !strings.Contains(wants, "kato@g1b.service") || strings.Contains(wants, "g2a") {
			t.Errorf("kato-group@one.target wants %q", wants)
		}
		table := m.mustKM("list", "--group", "one")
		if !strings.Contains(table, "GROUP") || !strings.Contains(table, "g1a") || !strings.Contains(table, "g1b") || strings.Contains(table, "g2a") {
			t.Errorf("list --group one:\n%s", table)
		}
		c0 := started("kato@g2a.service")

		// systemctl stop of the target stops its members only.
		m.must("systemctl", "stop", "kato-group@one.target")
		for _, u := range []string{"kato@g1a.service", "kato@g1b.service"} {
			m.waitFor(u+" to stop with its group", 15e9, func() bool { return m.activeState(u) == "inactive" })
		}
		if s := m.activeState("kato@g2a.service"); s != "active" {
			t.Errorf("g2a is %s after stopping group one", s)
		}
		// start --group starts the stopped members, as one batch.
		out := m.mustKM("start", "--group", "one")
		if !strings.Contains(out, "2 started, 0 already running, 0 failed") {
			t.Errorf("start --group: %s", out)
		}
		for _, u := range []string{"kato@g1a.service", "kato@g1b.service"} {
			if s := m.activeState(u); s != "active" {
				t.Errorf("%s is %s after start --group", u, s)
			}
		}
		// systemctl start of the target starts them too.
		m.must("systemctl", "stop", "kato-group@one.target")
		m.waitFor("group one to stop", 15e9, func() bool { return m.activeState("kato@g1b.service") == "inactive" })
		m.must("systemctl", "start", "kato-group@one.target")
		for _, u := range []string{"kato@g1a.service", "kato@g1b.service"} {
			m.waitFor(u+" to start with its group", 15e9, func() bool { return m.activeState(u) == "active" })
		}
		a0 := started("kato@g1a.service")
		if out := m.mustKM("restart", "--group", "one"); !strings.Contains(out, "2 restarted") {
			t.Errorf("restart --group: %s", out)
		}
		if a := started("kato@g1a.service"); a == a0 {
			t.Errorf("restart --group did not restart g1a")
		}
		if c := started("kato@g2a.service"); c != c0 {
			t.Errorf("restart --group one restarted g2a")
		}
		// stop --group stops and removes the group's instances.
		out = m.mustKM("stop", "--group", "one")
		if !strings.Contains(out, "stopped and removed g1a") || !strings.Contains(out, "stopped and removed g1b") {
			t.Errorf("stop --group: %s", out)
		}
		rows := m.listJSON()
		if len(rows) != 1 || rows["g2a"]["group"] != "two" {
			t.Errorf("after stop --group one: %v", rows)
		}
		if m.exists("/etc/systemd/system/kato-group@one.target.d/kato-manager.conf") {
			t.Errorf("group one's drop-in is left")
		}
		if r := m.km("stop", "--group", "one"); r.code != 2 || !strings.Contains(r.stderr, `no instance is in group "one"`) {
			t.Errorf("stop of an empty group: %s", r)
		}
		if status := m.mustKM("status"); !strings.Contains(status, "GROUP") || !strings.Contains(status, "two") {
			t.Errorf("status does not show the group:\n%s", status)
		}
	})

	run("validation: every error at once, nothing changed", func(t *testing.T) {
		m.mustKM("apply", "-f", write("base.yaml", "instances:\n  - {id: keep, port: 8301}\n"))
		snapshot := func() map[string]string {
			files := map[string]string{"registry": m.readFile("/var/lib/kato/instances.toml")}
			for _, g := range []string{"/etc/systemd/system/kato*.d/*", "/etc/kato/instances/*"} {
				found, _ := filepath.Glob(filepath.Join(m.Root(), g))
				for _, f := range found {
					data, _ := os.ReadFile(f)
					files[strings.TrimPrefix(f, m.Root())] = string(data)
				}
			}
			return files
		}
		before := snapshot()
		k0 := started("kato@keep.service")
		for _, tc := range []struct {
			name, file, content string
			want                []string
			kept                bool // only without --prune: --prune would remove keep and free its port
		}{
			{"duplicate ids", "dup.yaml", "instances:\n  - {id: x, port: 8302}\n  - {id: x, port: 8303}\n",
				[]string{"dup.yaml:3: x: invalid id x: is already the id of the entry on line 2"}, false},
			{"two entries on one port", "port.yaml", "instances:\n  - {id: x, port: 8302}\n  - {id: y, port: 8302}\n",
				[]string{"port.yaml:3: y: invalid port 8302: is already a port of instance x"}, false},
			{"unknown key and template, bad values, all at once", "many.yaml", "instances:\n  - id: x\n    colour: red\n    template: nope\n    recall_threshold: 7\n  - id: keep\n    max_predictions: 0\n",
				[]string{"many.yaml:3: x: invalid colour red: is not a key of an instance", "many.yaml:4: x: invalid template nope", "many.yaml:5: x: invalid recall_threshold 7: must be between 0 and 1", "many.yaml:7: keep: invalid max_predictions 0: must be between 1 and 10000", "4 problem(s)"}, false},
			{"a port of an instance the file leaves out", "taken.yaml", "instances:\n  - {id: x, port: 8301}\n",
				[]string{"taken.yaml:2: x: invalid port 8301: is a port of instance keep"}, true},
			{"unknown processor", "proc.json", "{\"instances\": [{\"id\": \"x\", \"processor\": \"v9\"}]}",
				[]string{"proc.json:1: x: invalid processor v9: must name a processor of kato.toml"}, false},
			{"syntax", "syntax.toml", "[[instances]]\nid = \n", []string{"syntax.toml:2: "}, false},
			{"file type", "fleet.txt", "instances: []\n", []string{"invalid --file /root/fleet.txt: must end in .yaml, .yml, .json or .toml"}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m.t = t
				path := write(tc.file, tc.content)
				commands := [][]string{{"apply", "-f", path}, {"diff", "-f", path}, {"apply", "--dry-run", "-f", path}}
				if !tc.kept {
					commands = append(commands, []string{"apply", "--prune", "-f", path})
				}
				for _, args := range commands {
					r := m.km(args...)
					if r.code != 2 {
						t.Errorf("%v: exit %d, want 2: %s", args, r.code, r)
					}
					for _, w := range tc.want {
						if !strings.Contains(r.stderr, w) {
							t.Errorf("%v: stderr lacks %q:\n%s", args, w, r.stderr)
						}
					}
				}
				if after := snapshot(); !mapsEqual(before, after) {
					t.Errorf("a refused file changed files:\nbefore %v\nafter  %v", keys(before), keys(after))
				}
				if k := started("kato@keep.service"); k != k0 {
					t.Errorf("a refused file restarted keep")
				}
			})
		}
		m.t = t
	})

	run("a failing instance in a batch is rolled back, the others run", func(t *testing.T) {
		m.mustKM("apply", "-f", write("before.yaml", "instances:\n  - {id: old, port: 8401, max_predictions: 5}\n"))
		o0 := started("kato@old.service")
		file := write("batch.yaml", `instances:
  - {id: old, port: 8401, max_predictions: 5, processor: broken}
  - {id: ok1, port: 8402}
  - {id: bad, port: 8403, processor: broken}
  - {id: ok2, port: 8404}
`)
		r := m.km("apply", "--parallel", "2", "-f", file)
		if r.code != 1 {
			t.Fatalf("apply with a failing instance: %s", r)
		}
		for _, w := range []string{"+ ok1 created", "+ ok2 created", "! bad failed", "removed again", "! old failed", "put back to its old settings", "2 created, 0 changed, 0 removed, 0 unchanged, 2 failed"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("apply output lacks %q:\n%s", w, r)
			}
		}
		// Not a terminal: one log line per step.
		if !strings.Contains(r.stderr, "starting ok1") || !strings.Contains(r.stderr, "ready ok1") || !strings.Contains(r.stderr, "rolled back bad") {
			t.Errorf("progress log:\n%s", r.stderr)
		}
		rows := m.listJSON()
		if _, ok := rows["bad"]; ok {
			t.Errorf("bad is still registered")
		}
		for _, id := range []string{"ok1", "ok2", "old"} {
			if s := m.activeState("kato@" + id + ".service"); s != "active" {
				t.Errorf("%s is %s", id, s)
			}
		}
		if rows["old"]["processor"] != "default" || rows["old"]["parameters"].(map[string]any)["max_predictions"] != 5.0 {
			t.Errorf("old was not put back: %v", rows["old"])
		}
		if o := started("kato@old.service"); o == o0 {
			t.Errorf("old was not restarted with its old settings after the failed change")
		}
		if m.exists("/etc/systemd/system/kato@bad.service.d/kato-manager.conf") || m.exists("/etc/kato/instances/bad.env") {
			t.Errorf("bad's files are left")
		}
		if e := env(8401); e["MAX_PREDICTIONS"] != "5" {
			t.Errorf("old runs with %v", e)
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
