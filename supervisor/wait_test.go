package supervisor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/fleet"
)

// waits records what a single start, restart or stop says it waits for,
// as "step state" lines.
func waits(m *Manager) *[]Wait {
	var got []Wait
	m.Waiting = func(w Wait) { got = append(got, w) }
	return &got
}

func steps(ws []Wait) string {
	var out []string
	for _, w := range ws {
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s", w.Step, w.State)))
	}
	return strings.Join(out, ", ")
}

// A single start says what it waits for, step by step, each step once,
// with the wait's bound; a batch is not reported here.
func TestStartSaysWhatItWaitsFor(t *testing.T) {
	for _, tc := range []struct {
		name, behavior string
		timeout        time.Duration
		want           string // the steps, in order
		detail         string // in the last step's detail
	}{
		{"ready", "ok", 0, "unit, ready", ""},
		{"not listening", "silent", 100 * time.Millisecond, "unit, listening active/running", "port 8000"},
		{"not answering", "deaf", 100 * time.Millisecond, "unit, answering active/running", "GET /health on port 8000"},
		{"restarted", "crash", 100 * time.Millisecond, "unit, unit activating/auto-restart", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.behavior["x"] = tc.behavior
			got := waits(e.m)
			_, err := e.m.Start(context.Background(), StartRequest{ID: "x", Parameters: config.DefaultParameters(), Timeout: tc.timeout})
			if (err == nil) != (tc.behavior == "ok") {
				t.Fatalf("start: %v", err)
			}
			if s := steps(*got); s != tc.want {
				t.Fatalf("steps = %q, want %q", s, tc.want)
			}
			last := (*got)[len(*got)-1]
			if !strings.Contains(last.Detail, tc.detail) || last.Unit != "kato@x.service" {
				t.Errorf("last wait = %+v, want detail %q", last, tc.detail)
			}
			want := tc.timeout
			if want == 0 {
				want = config.Seconds(e.m.Config.Processor.ReadyTimeout)
			}
			if last.Timeout != want {
				t.Errorf("timeout = %s, want %s", last.Timeout, want)
			}
		})
	}
}

func TestRestartAndStopSayWhatTheyWaitFor(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.start(t, StartRequest{ID: "p", APIPort: 8010})
	got := waits(e.m)
	if _, err := e.m.Restart(ctx, "p", time.Second); err != nil {
		t.Fatal(err)
	}
	if s := steps(*got); s != "unit, ready" || (*got)[0].Timeout != time.Second {
		t.Fatalf("restart: %q (%+v)", s, *got)
	}
	*got = nil
	if _, err := e.m.Stop(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if s := steps(*got); s != "stopping, stopped" || (*got)[0].Timeout != config.Seconds(e.m.Config.Processor.StopTimeout) {
		t.Fatalf("stop: %q (%+v)", s, *got)
	}
}

// A batch reports through its Progress, not Waiting.
func TestBatchDoesNotReportWaits(t *testing.T) {
	e := newTestEnv(t)
	got := waits(e.m)
	want := []fleet.Desired{{Instance: config.Instance{ID: "b1", Parameters: config.DefaultParameters()}}}
	if _, err := e.m.Apply(context.Background(), "fleet.yaml", want, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(*got) != 0 {
		t.Fatalf("a batch reported waits: %+v", *got)
	}
}
