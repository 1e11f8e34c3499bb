package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestLayer: a start is its own settings over its template's over
// kato.toml's [defaults], and "default" names [processor] as "".
func TestLayer(t *testing.T) {
	c := Default()
	c.Defaults["persistence"] = 7
	tpl := &Entry{Name: "Fast", Processor: "v2", Group: "edge", Parameters: map[string]any{"max_predictions": 5, "recall_threshold": 0.5},
		Set: map[string]bool{"name": true, "processor": true, "group": true, "max_predictions": true, "recall_threshold": true}}
	for _, tc := range []struct {
		name          string
		entry, tpl    *Entry
		wantName      string
		wantProcessor string
		wantNetwork   string
		wantGroup     string
		wantParams    map[string]any // beside the [defaults]
	}{
		{name: "nothing given", entry: &Entry{}, wantParams: map[string]any{"persistence": 7}},
		{name: "the template's", entry: &Entry{}, tpl: tpl, wantName: "Fast", wantProcessor: "v2", wantGroup: "edge",
			wantParams: map[string]any{"persistence": 7, "max_predictions": 5, "recall_threshold": 0.5}},
		{name: "the entry over the template", tpl: tpl, entry: &Entry{Name: "Mine", Processor: DefaultProcessor, Network: NetworkPrivate,
			Group: "", Parameters: map[string]any{"max_predictions": 6, "persistence": 9},
			Set: map[string]bool{"name": true, "processor": true, "network": true, "group": true, "max_predictions": true, "persistence": true}},
			wantName: "Mine", wantProcessor: "", wantNetwork: NetworkPrivate, wantGroup: "",
			wantParams: map[string]any{"persistence": 9, "max_predictions": 6, "recall_threshold": 0.5}},
		{name: "a value the entry does not set is not taken", entry: &Entry{Name: "ignored"}, wantParams: map[string]any{"persistence": 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := c.Layer(tc.entry, tc.tpl)
			if l.Name != tc.wantName || l.Processor != tc.wantProcessor || l.Network != tc.wantNetwork || l.Group != tc.wantGroup {
				t.Errorf("name %q processor %q network %q group %q, want %q %q %q %q", l.Name, l.Processor, l.Network, l.Group,
					tc.wantName, tc.wantProcessor, tc.wantNetwork, tc.wantGroup)
			}
			want := DefaultParameters()
			for k, v := range tc.wantParams {
				want[k] = v
			}
			if got := Parameters(l.Parameters); !reflect.DeepEqual(got, want) {
				t.Errorf("parameters %v, want %v", got, want)
			}
		})
	}
	if c.Defaults["max_predictions"] != DefaultParameters()["max_predictions"] {
		t.Errorf("Layer changed [defaults]: %v", c.Defaults)
	}
}

// TestParseParam: a parameter given as text is read by its row of Params,
// and a bad value is a *FieldError naming the field given.
func TestParseParam(t *testing.T) {
	row := func(flag string) Param {
		p, ok := ParamFlagNamed(flag)
		if !ok {
			t.Fatalf("no parameter with flag %s", flag)
		}
		return p
	}
	for _, tc := range []struct {
		flag, value string
		want        any
		wantErr     string
	}{
		{flag: "max-predictions", value: "50", want: 50},
		{flag: "recall-threshold", value: "0.25", want: 0.25},
		{flag: "log-level", value: "DEBUG", want: "DEBUG"},
		{flag: "update-frequencies", value: "on", want: true},
		{flag: "no-sort", value: "true", want: false},
		{flag: "max-predictions", value: "lots", wantErr: "invalid --max-predictions lots: must be a whole number"},
		{flag: "max-predictions", value: "0", wantErr: "invalid --max-predictions 0: must be between 1 and 10000"},
		{flag: "recall-threshold", value: "x", wantErr: "invalid --recall-threshold x: must be a number"},
		{flag: "recall-threshold", value: "1.5", wantErr: "invalid --recall-threshold 1.5: must be between 0 and 1"},
		{flag: "no-sort", value: "yes", wantErr: "invalid --no-sort yes: is a switch: on, or left out"},
		{flag: "log-level", value: "LOUD", wantErr: "invalid --log-level LOUD: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			got, err := ParseParam(row(tc.flag), "--"+tc.flag, tc.value)
			if tc.wantErr != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %v (%T), %v; want %v (%T)", got, got, err, tc.want, tc.want)
			}
		})
	}
}

// TestTemplateNamed: a template not in kato.toml is refused with the field
// and the templates there are.
func TestTemplateNamed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kato.toml")
	os.WriteFile(path, []byte("[templates.fast]\nmax_predictions = 5\n\n[templates.big]\nmax_predictions = 500\n"), 0o644)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if tpl, err := c.TemplateNamed("--template", "fast"); err != nil || tpl.Parameters["max_predictions"] != 5 {
		t.Errorf("fast: %+v, %v", tpl, err)
	}
	_, err = c.TemplateNamed("--template", "huge")
	if err == nil || err.Error() != "invalid --template huge: must name a [templates.NAME] of kato.toml: big, fast" {
		t.Errorf("huge: %v", err)
	}
	if _, err := Default().TemplateNamed("--template", "x"); err == nil || err.Error() != "invalid --template x: must name a [templates.NAME] of kato.toml: there are none" {
		t.Errorf("no templates: %v", err)
	}
}
