package textview

import (
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/supervisor"
)

func TestLivenessGolden(t *testing.T) {
	var b strings.Builder
	err := Liveness(&b, &supervisor.LivenessReport{Checks: []supervisor.LivenessCheck{
		{ID: "alpha", Outcome: "ok"},
		{ID: "beta-long-id", Outcome: "restarted", Failures: 3, Detail: "GET /health: timeout"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "liveness", b.String())
}
