package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadGroups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kato.toml")
	data := `[templates.web]
processor = "default"
persistence = 7

[groups.ab]
front = 9000
address = "127.0.0.1"
balance = "hash:X-User"
ready = "GET /health"
template = "web"
surge = 2

[groups.plain]
`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := c.GroupNamed("ab")
	if !ok || g.Front != 9000 || g.Address != "127.0.0.1" || g.Balance != "hash:X-User" || g.Ready != "GET /health" || g.Template != "web" || g.Surge != 2 {
		t.Errorf("groups.ab = %+v, %v", g, ok)
	}
	if g, ok := c.GroupNamed("plain"); !ok || g.Front != 0 {
		t.Errorf("groups.plain = %+v, %v; want a group without a front", g, ok)
	}
}

func TestLoadGroupsRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"port out of range", "[groups.ab]\nfront = 70000\n", []string{"line 2:", "invalid groups.ab.front 70000:"}},
		{"front in the instances' range", "[groups.ab]\nfront = 8100\n", []string{"line 2:", "invalid groups.ab.front 8100: must be outside the ports instances are given"}},
		{"two fronts on one port", "[groups.a]\nfront = 9000\n\n[groups.b]\nfront = 9000\n", []string{"line 5:", "invalid groups.b.front 9000: must differ from the front of group a"}},
		{"address", "[groups.ab]\nfront = 9000\naddress = \"everywhere\"\n", []string{"line 3:", `invalid groups.ab.address everywhere: must be an IP address`}},
		{"balance", "[groups.ab]\nfront = 9000\nbalance = \"random\"\n", []string{"line 3:", `invalid groups.ab.balance random: must be leastconn, roundrobin, path or hash:HEADER`}},
		{"hash without a header", "[groups.ab]\nbalance = \"hash:\"\n", []string{"line 2:", "invalid groups.ab.balance"}},
		{"ready", "[groups.ab]\nready = \"/health\"\n", []string{"line 2:", `invalid groups.ab.ready /health: must be GET followed by a path`}},
		{"unknown template", "[groups.ab]\ntemplate = \"nope\"\n", []string{"line 2:", `invalid groups.ab.template nope: must name a [templates.NAME] of kato.toml: there are none`}},
		{"unknown processor", "[groups.ab]\nprocessor = \"v9\"\n", []string{"line 2:", `invalid groups.ab.processor v9: must name a processor of kato.toml`}},
		{"template and processor", "[templates.t]\nname = \"x\"\n\n[groups.ab]\ntemplate = \"t\"\nprocessor = \"default\"\n", []string{"line 6:", "invalid groups.ab.processor"}},
		{"name", "[groups.\"a b\"]\nfront = 9000\n", []string{`invalid groups "a b": name must contain only letters`}},
		{"unknown key", "[groups.ab]\nfrontend = 9000\n", []string{"line 2:", "unknown key groups.ab.frontend"}},
		{"surge negative", "[groups.ab]\nprocessor = \"default\"\nsurge = -1\n", []string{"line 3:", "invalid groups.ab.surge -1: must be between 0 and 256"}},
		{"surge too big", "[groups.ab]\nprocessor = \"default\"\nsurge = 257\n", []string{"line 3:", "invalid groups.ab.surge 257: must be between 0 and 256"}},
		{"surge without a template", "[groups.ab]\nfront = 9000\nsurge = 1\n", []string{"line 3:", "invalid groups.ab.surge 1: goes with a template or processor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kato.toml")
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestInstanceWeight(t *testing.T) {
	in := Instance{ID: "a", Name: "A", Unit: "kato@a.service", APIPort: 8000, Network: NetworkHost, Parameters: DefaultParameters()}
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	in.Created, in.Updated = now, now
	for _, tc := range []struct {
		name   string
		group  string
		weight int
		want   string
	}{
		{"no weight", "", 0, ""},
		{"weight in a group", "g", 90, ""},
		{"weight 256", "g", 256, ""},
		{"weight 257", "g", 257, "invalid weight 257: must be between 1 and 256"},
		{"weight without a group", "", 5, "invalid weight 5: goes with a group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := in
			in.Group, in.Weight = tc.group, tc.weight
			err := in.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRegistryKeepsGroupSurge: a stored group's surge is written and read
// back by both of the registry's readers.
func TestRegistryKeepsGroupSurge(t *testing.T) {
	r := &Registry{Instances: map[string]*Instance{}, Groups: map[string]Group{"web": {Front: 9000, Processor: "default", Surge: 2}}}
	data, err := encodeRegistry(r)
	if err != nil {
		t.Fatal(err)
	}
	fast, ok := decodeRegistryFast(data)
	if !ok || fast.Groups["web"].Surge != 2 {
		t.Errorf("fast reader: %+v, %v\n%s", fast, ok, data)
	}
	full, err := decodeRegistryFull(data)
	if err != nil || full.Groups["web"].Surge != 2 {
		t.Errorf("full reader: %+v, %v\n%s", full, err, data)
	}
}
