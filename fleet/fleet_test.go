package fleet

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// guideFile is the multi-instance.yaml example of the KATO multi-instance
// guide, verbatim, in testdata (the real-systemd tests apply it too).
var guideFile = func() string {
	data, err := os.ReadFile("testdata/multi-instance.yaml")
	if err != nil {
		panic(err)
	}
	return string(data)
}()

func resolveFile(t *testing.T, c *config.Config, name, content string) ([]Desired, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	want, _, err := LoadFleet(c, path, "")
	return want, err
}

func TestFleetFormats(t *testing.T) {
	c := config.Default()
	for _, tc := range []struct{ name, file, content string }{
		{"the guide's YAML", "multi-instance.yaml", guideFile},
		{"JSON with tabs", "fleet.json", "{\n\t\"instances\": [\n\t\t{\"id\": \"sentiment-analyzer\", \"name\": \"Sentiment Analysis\", \"port\": 8001, \"indexer_type\": \"VI\", \"max_predictions\": 50},\n\t\t{\"id\": \"pattern-matcher\", \"name\": \"Pattern Matching\", \"port\": 8002, \"indexer_type\": \"VI\", \"max_predictions\": 100}\n\t]\n}\n"},
		{"TOML", "fleet.toml", "[[instances]]\nid = \"sentiment-analyzer\"\nname = \"Sentiment Analysis\"\nport = 8001\nindexer_type = \"VI\"\nmax_predictions = 50\n\n[[instances]]\nid = \"pattern-matcher\"\nname = \"Pattern Matching\"\nport = 8002\nindexer_type = \"VI\"\nmax_predictions = 100\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := resolveFile(t, c, tc.file, tc.content)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != 2 {
				t.Fatalf("got %d instances", len(want))
			}
			a, b := want[0], want[1]
			if a.ID != "sentiment-analyzer" || a.Name != "Sentiment Analysis" || a.APIPort != 8001 || a.ZMQPort != 0 || a.Parameters.Int("max_predictions") != 50 || a.Network != config.NetworkHost {
				t.Errorf("first = %+v", a.Instance)
			}
			if b.ID != "pattern-matcher" || b.APIPort != 8002 || b.Parameters.Int("max_predictions") != 100 || b.Parameters.Float("recall_threshold") != 0.1 {
				t.Errorf("second = %+v", b.Instance)
			}
		})
	}
}

func TestFleetErrors(t *testing.T) {
	c := config.Default()
	for _, tc := range []struct {
		name, file, content string
		want                []string // each a line of the error, in order
	}{
		{"every problem at once, with file, line, id, field, value and rule", "f.yaml", `instances:
  - id: a
    port: 8001
    max_predictions: 0
    colour: red
  - id: a
    port: 8001
  - id: "bad id"
    recall_threshold: 2
    template: nope
`, []string{
			"f.yaml:4: a: invalid max_predictions 0: must be between 1 and 10000",
			"f.yaml:5: a: invalid colour red: is not a key of an instance",
			"f.yaml:6: a: invalid id a: is already the id of the entry on line 2",
			`f.yaml:8: bad id: invalid id "bad id": must contain only letters`,
			"f.yaml:9: bad id: invalid recall_threshold 2: must be between 0 and 1",
			"f.yaml:10: bad id: invalid template nope: must name a template of the file or of kato.toml: there are none",
		}},
		{"two entries on one port", "f.yaml", "instances:\n  - {id: a, port: 8001}\n  - {id: b, zmq_port: 8001}\n",
			[]string{"f.yaml:3: b: invalid zmq_port 8001: is already a port of instance a"}},
		{"wrong types", "f.json", "{\"instances\": [{\"id\": \"a\", \"port\": \"8001\", \"sort\": \"yes\", \"max_predictions\": 1.5}]}",
			[]string{"f.json:1: a: invalid port 8001: must be an integer", "f.json:1: a: invalid sort yes: must be true or false", "f.json:1: a: invalid max_predictions 1.5: must be an integer"}},
		{"missing id and unknown top-level key", "f.yaml", "instance:\n  - id: a\ninstances:\n  - name: x\n",
			[]string{"f.yaml:1: invalid instance", "f.yaml:4: instance 1: invalid id \"\": must be set"}},
		{"syntax error", "f.yaml", "instances:\n  - id: a\n    port: [1\n", []string{"f.yaml:2: did not find expected ',' or ']'"}},
		{"TOML lines", "f.toml", "[[instances]]\nid = \"a\"\n\n[[instances]]\nid = \"b\"\nmax_predictions = -1\n",
			[]string{"f.toml:6: b: invalid max_predictions -1: must be between 1 and 10000"}},
		{"TOML inline tables, one per line or over several", "f.toml", "instances = [ # the fleet\n  {id = \"a\", port = 8001, name = \"x, {y}\"},\n  {id = \"b\",\n   max_predictions = -1},\n  {'id' = \"c\", zmq_port = 8001},\n]\n",
			[]string{"f.toml:4: b: invalid max_predictions -1: must be between 1 and 10000", "f.toml:5: c: invalid zmq_port 8001: is already a port of instance a"}},
		{"unknown processor", "f.yaml", "instances:\n  - id: a\n    processor: v9\n",
			[]string{"f.yaml:3: a: invalid processor v9: must name a processor of kato.toml: default"}},
		{"old and new name together", "f.yaml", "instances:\n  - id: a\n    max_seq_length: 3\n    max_pattern_length: 4\n",
			[]string{"f.yaml:3: a: invalid max_seq_length 3: is the old name of max_pattern_length"}},
		{"a port in a template", "f.yaml", "templates:\n  t:\n    port: 1\ninstances:\n  - {id: a, template: t}\n",
			[]string{"f.yaml:3: template t: invalid port 1: cannot be set in a template"}},
		{"a host that would be an ssh option", "f.yaml", "instances:\n  - {id: a, host: -oProxyCommand=x}\n  - {id: b, host: \"a b\"}\n",
			[]string{`f.yaml:2: a: invalid host -oProxyCommand=x: "-oProxyCommand=x" starts with -`, `f.yaml:3: b: invalid host "a b": character ' ' not allowed`}},
		{"one port twice on one host", "f.yaml", "instances:\n  - {id: a, host: beta, port: 8001}\n  - {id: b, host: beta, port: 8001}\n  - {id: c, port: 8001}\n",
			[]string{"f.yaml:3: b: invalid port 8001: is already a port of instance a"}},
		{"a host in a template", "f.yaml", "templates:\n  t:\n    host: beta\ninstances:\n  - {id: a, template: t}\n",
			[]string{"f.yaml:3: template t: invalid host beta: cannot be set in a template"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolveFile(t, c, tc.file, tc.content)
			var fes config.FileErrors
			if !errors.As(err, &fes) {
				t.Fatalf("err = %v, want config.FileErrors", err)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("config.FileErrors are not a *config.FieldError to errors.As")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], strings.TrimPrefix(w, filepath.Dir(w))) || !strings.HasSuffix(strings.SplitN(lines[i], ":", 2)[0], tc.file) {
					t.Errorf("error %d = %q, want %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestFleetTemplates(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kato.toml")
	os.WriteFile(cfgPath, []byte("[defaults]\npersistence = 7\n\n[templates.fast]\nmax_predictions = 5\nrecall_threshold = 0.5\ngroup = \"edge\"\n"), 0o644)
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := resolveFile(t, c, "f.yaml", `templates:
  big: {max_predictions: 500, name: Big}
instances:
  - {id: a, template: fast}
  - {id: b, template: fast, max_predictions: 6, group: core}
  - {id: c, template: big}
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b, cc := want[0], want[1], want[2]
	if a.Parameters.Int("max_predictions") != 5 || a.Parameters.Float("recall_threshold") != 0.5 || a.Group != "edge" || a.Parameters.Int("persistence") != 7 {
		t.Errorf("a = %+v", a.Instance)
	}
	if b.Parameters.Int("max_predictions") != 6 || b.Parameters.Float("recall_threshold") != 0.5 || b.Group != "core" {
		t.Errorf("b = %+v", b.Instance)
	}
	if cc.Parameters.Int("max_predictions") != 500 || cc.Name != "Big" || cc.Group != "" {
		t.Errorf("c = %+v", cc.Instance)
	}
	// A bad template in kato.toml fails the load, naming the line.
	os.WriteFile(cfgPath, []byte("[templates.t]\nmax_predictions = 0\n"), 0o644)
	if _, err := config.Load(cfgPath); err == nil || !strings.Contains(err.Error(), "kato.toml:2: template t: invalid max_predictions 0") {
		t.Errorf("bad template: %v", err)
	}
}

func TestPlanFleet(t *testing.T) {
	c := config.Default()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := &config.Registry{Instances: map[string]*config.Instance{}}
	add := func(id string, api, zmq int, params config.Parameters) {
		reg.Instances[id] = &config.Instance{ID: id, Name: config.DefaultInstanceName, Unit: "kato@" + id + ".service", APIPort: api, ZMQPort: zmq, Network: config.NetworkHost, Parameters: params, Created: now, Updated: now}
	}
	add("same", 8001, 5555, c.Defaults.Clone())
	changed := c.Defaults.Clone()
	changed["max_predictions"] = 7
	add("changed", 8002, 5556, changed)
	add("extra", 8003, 5557, c.Defaults.Clone())
	want, err := resolveFile(t, c, "f.yaml", "instances:\n  - {id: same}\n  - {id: changed, port: 8012}\n  - {id: new, port: 8004}\n")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanFleet("f.yaml", want, reg, true)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Step{}
	for _, s := range plan.Steps {
		got[s.ID] = s
	}
	if s := got["same"]; s.Action != Keep || len(s.Changes) != 0 {
		t.Errorf("same: %+v", s)
	}
	if s := got["changed"]; s.Action != Change || len(s.Changes) != 2 || s.Changes[0] != (FieldChange{"port", "8002", "8012"}) || s.Changes[1] != (FieldChange{"max_predictions", "7", "100"}) {
		t.Errorf("changed: %+v", s.Changes)
	}
	if s := got["new"]; s.Action != Create || s.Changes[1] != (FieldChange{"port", "", "8004"}) || s.Changes[2] != (FieldChange{"zmq_port", "", "(next free)"}) {
		t.Errorf("new: %+v", s.Changes)
	}
	if s := got["extra"]; s.Action != Remove {
		t.Errorf("extra: %+v", s)
	}
	if !plan.Pending() || plan.Count(Create) != 1 || plan.Count(Remove) != 1 {
		t.Errorf("plan counts wrong: %+v", plan)
	}
	// Without --prune, a port of an instance the file leaves out is taken.
	want, _ = resolveFile(t, c, "f.yaml", "instances:\n  - {id: new, port: 8003}\n")
	if _, err := PlanFleet("f.yaml", want, reg, false); err == nil || !strings.Contains(err.Error(), "f.yaml:2: new: invalid port 8003: is a port of instance extra") {
		t.Errorf("port of a kept instance: %v", err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	c := config.Default()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	params := c.Defaults.Clone()
	params["max_predictions"] = 50
	params["recall_threshold"] = 0.25
	params["sort"] = false
	params["auto_act_threshold"] = 1.0
	reg := &config.Registry{Instances: map[string]*config.Instance{
		"a": {ID: "a", Name: `Say "hi"`, Unit: "kato@a.service", APIPort: 8001, ZMQPort: 5555, Network: config.NetworkHost, Group: "g", Weight: 90, Parameters: params, Created: now, Updated: now},
		"b": {ID: "b", Name: "B", Unit: "kato@b.service", APIPort: 8002, ZMQPort: 5556, Network: config.NetworkPrivate, Parameters: c.Defaults.Clone(), Created: now, Updated: now},
	}, Groups: map[string]config.Group{"g": {Front: 9000, Balance: "hash:X-User", Address: "127.0.0.1"}, "h": {Processor: "default", Surge: 2}}}
	for _, format := range []string{"yaml", "json", "toml"} {
		t.Run(format, func(t *testing.T) {
			data, err := Export(reg, c.Defaults, format)
			if err != nil {
				t.Fatal(err)
			}
			want, err := resolveFile(t, c, "export."+format, string(data))
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			f, err := ParseFleet("export."+format, data)
			if err != nil || !f.HasGroups || !maps.Equal(f.Groups, reg.Groups) {
				t.Errorf("groups read back %+v, %v; want %+v\n%s", f.Groups, err, reg.Groups, data)
			}
			plan, err := PlanFleet("export", want, reg, true)
			if err != nil {
				t.Fatal(err)
			}
			if plan.Pending() {
				t.Errorf("apply of the export would change things: %+v\n%s", plan.Steps, data)
			}
		})
	}
}

// TestFleetHosts: entries that name a host are that host's; this host
// resolves only its own, so a processor only another host has is no error
// here.
func TestFleetHosts(t *testing.T) {
	c := config.Default()
	content := "instances:\n  - {id: a, port: 8001}\n  - {id: b, host: root@beta, port: 8001, processor: v9}\n  - {id: c, host: alpha}\n"
	f, err := ParseFleet("f.yaml", []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Hosts(); !slices.Equal(got, []string{"alpha", "root@beta"}) {
		t.Errorf("hosts = %v", got)
	}
	want, _, err := ReadFleet(c, "f.yaml", []byte(content), "")
	if err != nil || len(want) != 1 || want[0].ID != "a" {
		t.Fatalf("this host's entries: %v, %v; want a alone", want, err)
	}
	if _, _, err := ReadFleet(c, "f.yaml", []byte(content), "root@beta"); err == nil || !strings.Contains(err.Error(), "f.yaml:3: b: invalid processor v9") {
		t.Errorf("beta's entries resolved here: %v; want beta's unknown processor named with its line", err)
	}
	if want, _, err := ReadFleet(c, "f.yaml", []byte(content), "alpha"); err != nil || len(want) != 1 || want[0].ID != "c" {
		t.Errorf("alpha's entries: %v, %v", want, err)
	}
}

// TestFleetWeights: weight is an entry key, set by a template too, checked
// with its line, and only in a group.
func TestFleetWeights(t *testing.T) {
	c := config.Default()
	content := `templates:
  canary: {group: ab, weight: 10}
instances:
  - {id: a, group: ab, weight: 90}
  - {id: b, template: canary}
  - {id: c, group: ab}
`
	want, err := resolveFile(t, c, "f.yaml", content)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, d := range want {
		got[d.ID] = d.Weight
	}
	if got["a"] != 90 || got["b"] != 10 || got["c"] != 0 {
		t.Errorf("weights %v, want a 90, b 10 (the template's), c none", got)
	}
	for _, tc := range []struct{ content, want string }{
		{"instances:\n  - id: a\n    group: ab\n    weight: 0\n", "f.yaml:4: a: invalid weight 0: must be between 1 and 256"},
		{"instances:\n  - id: a\n    group: ab\n    weight: heavy\n", "f.yaml:4: a: invalid weight heavy: must be an integer"},
		{"instances:\n  - id: a\n    weight: 5\n", "f.yaml:3: a: invalid weight 5: goes with a group"},
	} {
		if _, err := resolveFile(t, c, "f.yaml", tc.content); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.content, err, tc.want)
		}
	}
}

// TestDocsABFleetFile: the KATO multi-instance guide's A/B test as the
// docs give it resolves to its two members with their weights.
func TestDocsABFleetFile(t *testing.T) {
	doc, err := os.ReadFile("../docs/fleet-files.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n# ab.yaml")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/fleet-files.md has no ab.yaml block")
	}
	want, err := resolveFile(t, config.Default(), "ab.yaml", "# ab.yaml"+block)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 2 || want[0].ID != "version-a" || want[0].Weight != 90 || want[1].Weight != 10 || want[1].Group != "ab" ||
		want[1].Parameters["max_predictions"] != 200 {
		t.Errorf("ab.yaml resolves to %+v", want)
	}
}

// TestFleetReplicas: replicas: N makes the entry N instances ID-1…ID-N in
// the group of that name, with their ports to allocate; errors name the
// line.
func TestFleetReplicas(t *testing.T) {
	c := config.Default()
	content := `templates:
  web: {persistence: 9}
instances:
  - {id: web, replicas: 3, template: web}
  - {id: canary, replicas: 1, group: web, weight: 10}
  - {id: alone, port: 8001}
`
	want, err := resolveFile(t, c, "f.yaml", content)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range want {
		got = append(got, fmt.Sprintf("%s:%s:%d:%d:%v", d.ID, d.Group, d.APIPort, d.Weight, d.Parameters["persistence"]))
	}
	wantIDs := []string{"web-1:web:0:0:9", "web-2:web:0:0:9", "web-3:web:0:0:9", "canary-1:web:0:10:5", "alone::8001:0:5"}
	if !slices.Equal(got, wantIDs) {
		t.Errorf("resolved %v\nwant %v", got, wantIDs)
	}
	for _, tc := range []struct{ content, want string }{
		{"instances:\n  - {id: web, replicas: 2, port: 8001}\n", "f.yaml:2: web: invalid replicas 2: goes without port and zmq_port"},
		{"instances:\n  - {id: web, replicas: 2}\n  - {id: web-2}\n", "f.yaml:2: web: invalid replicas 2: make the id web-2, which another entry has"},
		{"instances:\n  - {id: web, replicas: 0}\n", "f.yaml:2: web: invalid replicas 0: must be between 1 and 256"},
		{"templates:\n  t: {replicas: 2}\ninstances:\n  - {id: web, template: t}\n", "invalid replicas"},
	} {
		if _, err := resolveFile(t, c, "f.yaml", tc.content); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v\nwant %q", tc.content, err, tc.want)
		}
	}
}

// TestFleetGroups: groups: takes kato.toml's keys, checked by its rules
// with the group's line.
func TestFleetGroups(t *testing.T) {
	c := config.Default()
	content := `groups:
  ab: {front: 9000, balance: roundrobin}
  web: {front: 9100, processor: default, ready: GET /health, surge: 2}
instances:
  - {id: a, group: ab, weight: 90}
`
	_, f, err := ReadFleet(c, "f.yaml", []byte(content), "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]config.Group{"ab": {Front: 9000, Balance: "roundrobin"}, "web": {Front: 9100, Processor: "default", Ready: "GET /health", Surge: 2}}
	if !maps.Equal(f.Groups, want) {
		t.Errorf("groups %+v, want %+v", f.Groups, want)
	}
	for _, tc := range []struct{ content, want string }{
		{"groups:\n  ab: {front: 70000}\ninstances: []\n", "f.yaml:2: group ab: invalid front 70000"},
		{"groups:\n  ab: {front: 9000}\n  cd: {front: 9000}\ninstances: []\n", "f.yaml:3: group cd: invalid front 9000: must differ from the front of group ab"},
		{"groups:\n  ab:\n    balance: random\ninstances: []\n", "f.yaml:2: group ab: invalid balance random: must be leastconn"},
		{"groups:\n  ab:\n    frontend: 9000\ninstances: []\n", "f.yaml:3: group ab: invalid frontend 9000: is not a key of a group"},
		{"groups:\n  ab: {template: nope}\ninstances: []\n", "f.yaml:2: group ab: invalid template nope: must name a [templates.NAME] of kato.toml"},
		{"groups: [ab]\ninstances: []\n", "f.yaml:1: invalid groups"},
		{"groups:\n  ab: {front: 9000, surge: 1}\ninstances: []\n", "f.yaml:2: group ab: invalid surge 1: goes with a template or processor"},
		{"groups:\n  ab: {processor: default, surge: -2}\ninstances: []\n", "f.yaml:2: group ab: invalid surge -2: must be between 0 and 256"},
		{"groups:\n  ab: {surge: two}\ninstances: []\n", "f.yaml:2: group ab: invalid surge two: must be an integer"},
	} {
		if _, _, err := ReadFleet(c, "f.yaml", []byte(tc.content), ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v\nwant %q", tc.content, err, tc.want)
		}
	}
}

func TestGroupChanges(t *testing.T) {
	have := map[string]config.Group{"a": {Front: 9000}, "b": {Front: 9100, Balance: "path"}, "c": {Processor: "default"}}
	want := map[string]config.Group{"a": {Front: 9000}, "b": {Front: 9200, Balance: "path"}, "d": {Front: 9300, Balance: "roundrobin"}}
	got := GroupChanges(have, want)
	exp := []string{"~ group b: front 9100, balance path -> front 9200, balance path", "- group c", "+ group d: front 9300, balance roundrobin"}
	if !slices.Equal(got, exp) {
		t.Errorf("GroupChanges = %q\nwant %q", got, exp)
	}
	if got := GroupChanges(want, want); len(got) != 0 {
		t.Errorf("no change: %q", got)
	}
}
