package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// TestStartInputCheck: a value given is taken as given; each rule names
// its field and value.
func TestStartInputCheck(t *testing.T) {
	given := func(keys ...string) map[string]bool {
		m := map[string]bool{}
		for _, k := range keys {
			m[k] = true
		}
		return m
	}
	for _, tc := range []struct {
		name         string
		in           StartInput
		field, value string
	}{
		{"nothing given", StartInput{}, "", ""},
		{"zero values not given", StartInput{Given: given("template")}, "", ""},
		{"an empty id", StartInput{Given: given("id")}, "id", ""},
		{"a bad id", StartInput{ID: "a b", Given: given("id")}, "id", "a b"},
		{"an empty name", StartInput{Given: given("name")}, "name", ""},
		{"a zero port", StartInput{Given: given("port")}, "port", "0"},
		{"a zero zmq port", StartInput{Given: given("zmq-port")}, "zmq_port", "0"},
		{"a weight of 0", StartInput{Given: given("weight")}, "--weight", "0"},
		{"a weight too big", StartInput{Weight: config.MaxWeight + 1, Given: given("weight")}, "--weight", "257"},
		{"a negative timeout", StartInput{Timeout: -time.Second, Given: given("timeout")}, "timeout", "-1s"},
		{"all good", StartInput{ID: "a", Name: "A", APIPort: 8001, ZMQPort: 5555, Weight: 3, Timeout: time.Second,
			Given: given("id", "name", "port", "zmq-port", "weight", "timeout")}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Check()
			var fe *config.FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("Check: %v, want nil", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field || fe.Value != tc.value):
				t.Errorf("Check: %v, want a field error of %s %q", err, tc.field, tc.value)
			}
		})
	}
}

// TestStartInputRequest: what was given over the template's settings over
// [defaults]; a value not given, empty or not, leaves the template's.
func TestStartInputRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kato.toml")
	os.WriteFile(path, []byte("[defaults]\npersistence = 7\n\n[processors.v2]\ncommand = [\"/bin/true\"]\n\n"+
		"[templates.fast]\nname = \"Fast\"\nprocessor = \"v2\"\nnetwork = \"private\"\ngroup = \"edge\"\nmax_predictions = 5\n"), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	in := StartInput{ID: "a", Template: "fast", Group: "core", Processor: "", APIPort: 8001, Command: []string{"/bin/x"},
		Parameters: config.Parameters{"max_predictions": 6}, Explicit: []string{"--max-predictions", "--group"},
		Given: map[string]bool{"id": true, "template": true, "group": true, "port": true}}
	req, err := in.Request(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "a" || req.Name != "Fast" || req.Processor != "v2" || req.Network != "private" || req.Group != "core" || req.APIPort != 8001 ||
		!slices.Equal(req.Command, []string{"/bin/x"}) || !slices.Equal(req.Explicit, in.Explicit) {
		t.Errorf("request %+v", req)
	}
	if req.Parameters["max_predictions"] != 6 || req.Parameters["persistence"] != 7 {
		t.Errorf("parameters %v: want max_predictions 6 given over the template's 5, persistence 7 of [defaults]", req.Parameters)
	}
	// The template's processor given as the default one is the default.
	in.Given["processor"] = true
	if req, err := in.Request(cfg); err != nil || req.Processor != "" {
		t.Errorf("processor given empty: %q, %v", req.Processor, err)
	}
	in.Template = "slow"
	var fe *config.FieldError
	if _, err := in.Request(cfg); !errors.As(err, &fe) || fe.Value != "slow" {
		t.Errorf("an unknown template: %v", err)
	}
}
