package suggest

import (
	"slices"
	"testing"
)

func TestNearest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		typed string
		known []string
		want  []string
	}{
		{"transposed command", "strat", []string{"start", "stop", "status", "list"}, []string{"start"}},
		{"missing letter", "procesor-1", []string{"processor-1", "processor-2", "other"}, []string{"processor-1"}},
		{"missing plural", "max-prediction", []string{"max-predictions", "max-seq-length"}, []string{"max-predictions"}},
		{"toml key", "num_worker", []string{"num_workers", "db_path", "service_url"}, []string{"num_workers"}},
		{"case", "MAIN", []string{"main", "maine"}, []string{"main"}},
		{"prefix when nothing is near", "max", []string{"max-predictions", "max-seq-length", "port"}, []string{"max-predictions", "max-seq-length"}},
		{"nothing alike", "frobnicate", []string{"start", "stop"}, nil},
		{"short words are not replaced", "id", []string{"gc", "list"}, nil},
		{"duplicates once", "procesor", []string{"processor", "processor"}, []string{"processor"}},
		{"ties in order", "stat", []string{"stats", "start", "state"}, []string{"start", "state", "stats"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Nearest(tc.typed, tc.known); !slices.Equal(got, tc.want) {
				t.Fatalf("Nearest(%q) = %q, want %q", tc.typed, got, tc.want)
			}
		})
	}
}

func TestDidYouMean(t *testing.T) {
	if got := DidYouMean("strat", []string{"start", "stop"}); got != "did you mean start?" {
		t.Fatalf("got %q", got)
	}
	if got := DidYouMean("zzz", []string{"start"}); got != "" {
		t.Fatalf("got %q", got)
	}
	if got := OrList([]string{"a", "b", "c"}); got != "a, b or c" {
		t.Fatalf("got %q", got)
	}
}
