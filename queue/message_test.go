package queue_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kato-manager/kato-manager/queue"
)

func TestBoundMessage(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"short", "answered 500", 64, "answered 500"},
		{"exactly the bound", strings.Repeat("a", 64), 64, strings.Repeat("a", 64)},
		// The mark takes 27 bytes of the 40.
		{"cut", strings.Repeat("a", 100), 40, strings.Repeat("a", 13) + "… [cut: 100 bytes in all]"},
		{"cut before a split character", strings.Repeat("a", 12) + "é" + strings.Repeat("a", 100), 40, strings.Repeat("a", 12) + "… [cut: 114 bytes in all]"},
		{"invalid UTF-8 replaced", "bad \xff byte", 64, "bad \uFFFD byte"},
		{"bound smaller than the mark", strings.Repeat("a", 100), 5, "… [cut: 100 bytes in all]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := queue.BoundMessage(tc.in, tc.n)
			if got != tc.want {
				t.Errorf("BoundMessage(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("BoundMessage(%q, %d) = %q is not valid UTF-8", tc.in, tc.n, got)
			}
		})
	}
}
