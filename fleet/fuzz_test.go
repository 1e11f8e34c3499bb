package fleet

import (
	"errors"
	"testing"

	"github.com/kato-manager/kato-manager/config"
)

// FuzzParseFleet feeds arbitrary fleet files, as YAML (and so JSON) and as
// TOML, to the fleet parser: it never panics, every refusal is FileErrors
// naming the file, and every instance it accepts has a valid id and
// parameters that pass Validate.
func FuzzParseFleet(f *testing.F) {
	f.Add([]byte("instances:\n  - id: a\n    port: 8001\n    max_predictions: 50\n"), false)
	f.Add([]byte("templates:\n  t: {max_predictions: 5, group: g}\ninstances:\n  - {id: a, template: t, max_seq_length: 3}\n"), false)
	f.Add([]byte("{\"instances\": [{\"id\": \"a\", \"port\": 8001}]}"), false)
	f.Add([]byte("[[instances]]\nid = \"a\"\nport = 8001\n\n[templates.t]\nmax_predictions = 5\n"), true)
	f.Add([]byte("instances: &a [*a]\n"), false)
	f.Add([]byte("instances = [ # x\n  {id = \"a\", name = '''x\n}'''},\n  {\"id\" = 'b', port = 8001},\n]\n"), true)
	c := config.Default()
	f.Fuzz(func(t *testing.T, data []byte, asTOML bool) {
		path := "fleet.yaml"
		if asTOML {
			path = "fleet.toml"
		}
		fl, err := ParseFleet(path, data)
		if err == nil {
			var want []Desired
			want, err = Resolve(c, fl)
			for _, d := range want {
				if config.ValidateID(d.ID) != nil {
					t.Fatalf("accepted id %q", d.ID)
				}
				if verr := d.Parameters.Validate(); verr != nil {
					t.Fatalf("accepted parameters Validate refuses: %v", verr)
				}
			}
		}
		if err != nil {
			var fes config.FileErrors
			if !errors.As(err, &fes) || len(fes) == 0 {
				t.Fatalf("refused without FileErrors: %v", err)
			}
			for _, fe := range fes {
				if fe.File != path {
					t.Fatalf("error names %q, not the file: %v", fe.File, fe)
				}
			}
		}
	})
}
