package config

import (
	"errors"
	"testing"
)

// TestLivenessDefaults: the check is on for generation C (3 failures, every
// 10 s, 2 s timeout) and off for A and B, unless the section says.
func TestLivenessDefaults(t *testing.T) {
	path := writeFile(t, "kato.toml", `
[processors.a]
command = ["/opt/a/kato"]
generation = "a"

[processors.c]
command = ["/usr/bin/uvicorn", "kato.services.kato_fastapi:app"]
generation = "c"

[processors.c-off]
command = ["/usr/bin/uvicorn", "kato.services.kato_fastapi:app"]
generation = "c"
liveness_failures = 0

[processors.b-on]
command = ["/opt/b/kato"]
liveness_failures = 5
liveness_interval = 30
liveness_timeout = 4.5
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name              string
		p                 Processor
		failures          int
		interval, timeout float64
	}{
		{"[processor] (b)", c.Processor, 0, 10, 2},
		{"a", c.Processors["a"], 0, 10, 2},
		{"c", c.Processors["c"], 3, 10, 2},
		{"c-off", c.Processors["c-off"], 0, 10, 2},
		{"b-on", c.Processors["b-on"], 5, 30, 4.5},
	} {
		if tc.p.LivenessFailures != tc.failures || tc.p.LivenessInterval != tc.interval || tc.p.LivenessTimeout != tc.timeout {
			t.Errorf("%s: failures %d, interval %v, timeout %v; want %d, %v, %v", tc.name,
				tc.p.LivenessFailures, tc.p.LivenessInterval, tc.p.LivenessTimeout, tc.failures, tc.interval, tc.timeout)
		}
		if tc.p.LivenessOn() != (tc.failures > 0) {
			t.Errorf("%s: LivenessOn() = %v", tc.name, tc.p.LivenessOn())
		}
	}
}

// TestLivenessRejects: each bad liveness key is named with its value and
// rule.
func TestLivenessRejects(t *testing.T) {
	for _, tc := range []struct {
		name        string
		change      func(*Processor)
		field, rule string
		value       string
	}{
		{"negative failures", func(p *Processor) { p.LivenessFailures = -1 }, "processor.liveness_failures", "must be 0 (off) to 100", "-1"},
		{"too many failures", func(p *Processor) { p.LivenessFailures = 101 }, "processor.liveness_failures", "must be 0 (off) to 100", "101"},
		{"interval zero", func(p *Processor) { p.LivenessInterval = 0 }, "processor.liveness_interval", "must be greater than 0", "0"},
		{"interval below the timer", func(p *Processor) { p.LivenessInterval = 2 }, "processor.liveness_interval", "must be at least 5 seconds, the period of kato-liveness.timer", "2"},
		{"timeout zero", func(p *Processor) { p.LivenessTimeout = 0 }, "processor.liveness_timeout", "must be greater than 0", "0"},
		{"timeout as long as the interval", func(p *Processor) { p.LivenessTimeout = 10 }, "processor.liveness_timeout", "must be shorter than liveness_interval (10 s)", "10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(&c.Processor)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Rule != tc.rule || fe.Value != tc.value {
				t.Errorf("Validate() = %v, want %s = %s: %s", err, tc.field, tc.value, tc.rule)
			}
		})
	}
}
