package main

import (
	"github.com/kato-manager/kato-manager/fleet"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kato-manager/kato-manager/config"
)

// TestStartLayersAsFleetFiles: `start --template` and a fleet file's entry
// naming the same template of kato.toml make the same instance: the
// settings given over the template's over [defaults].
func TestStartLayersAsFleetFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kato.toml")
	os.WriteFile(path, []byte("[defaults]\npersistence = 7\n\n[processors.v2]\ncommand = [\"/bin/true\"]\n\n"+
		"[templates.fast]\nname = \"Fast\"\nprocessor = \"v2\"\nnetwork = \"private\"\ngroup = \"edge\"\nmax_predictions = 5\nrecall_threshold = 0.5\n"), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		entry string
	}{
		{"the template alone", []string{"--id", "a", "--template", "fast"}, "{id: a, template: fast}"},
		{"settings over the template", []string{"--id", "a", "--template", "fast", "--max-predictions", "6", "--group", "core", "--processor", "default", "--network", "host"},
			"{id: a, template: fast, max_predictions: 6, group: core, processor: default, network: host}"},
		{"a name over the template's", []string{"--id", "a", "--template", "fast", "--name", "Mine", "--persistence", "9"},
			"{id: a, template: fast, name: Mine, persistence: 9}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
			f := startFlags(fs)
			if err := fs.Parse(tc.flags); err != nil {
				t.Fatal(err)
			}
			req, err := startRequest(fs, f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := fleet.ReadFleet(cfg, "f.yaml", []byte("instances:\n  - "+tc.entry+"\n"), "")
			if err != nil {
				t.Fatal(err)
			}
			w := want[0]
			if req.ID != w.ID || req.Name != w.Name || req.Processor != w.Processor || req.Network != w.Network || req.Group != w.Group {
				t.Errorf("start: id %q name %q processor %q network %q group %q; the fleet file: %q %q %q %q %q",
					req.ID, req.Name, req.Processor, req.Network, req.Group, w.ID, w.Name, w.Processor, w.Network, w.Group)
			}
			if !reflect.DeepEqual(req.Parameters, w.Parameters) {
				t.Errorf("start's parameters %v, the fleet file's %v", req.Parameters, w.Parameters)
			}
		})
	}
}
