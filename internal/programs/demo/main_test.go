package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
)

// TestDemo runs `make demo`'s program and checks that it did the job it
// shows: the guide's three instances ran, the workers drained the queue of
// sample documents against the KG service stand-in, and all was cleaned up.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a real systemd; not in -short mode")
	}
	var b strings.Builder
	out = &b
	defer func() { out = os.Stdout }()
	err := run(context.Background())
	if errors.Is(err, sdharness.ErrUnavailable) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, b.String())
	}
	text := b.String()
	for _, want := range []string{
		"processor-1  Main Processor  default (a)  private  -      running",
		"processor-2  Secondary       default (a)  private  -      running",
		"processor-3  Auto Learner    default (a)  private  -      running",
		// Each instance answers from its own engine, with its own name.
		`{"id":"processor-2","name":"Secondary","status":"okay"}`,
		`{"id":"processor-3","name":"Auto Learner","status":"okay"}`,
		"registry: in step with systemd",
		"processed: 12 (success 12, failed 0, skipped 0)",
		"queue: total 12: pending 0, processing 0, completed 12, failed 0, skipped 0",
		"kg service: enabled true, url http://localhost:8088, healthy true",
		"stopped and removed processor-3",
		"done: everything ran in the throwaway systemd",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo does not show %q:\n%s", want, text)
		}
	}
}
