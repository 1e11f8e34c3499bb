// Package suggest finds, for a name that names nothing, the known names it
// was probably meant to be: the "did you mean" of an error message.
package suggest

import (
	"slices"
	"strings"

	"github.com/agnivade/levenshtein"
)

// Nearest returns the names of known that typed is probably a misspelling
// of, sorted: those at the smallest edit distance, if it is small for
// typed's length, else those that typed begins. Case is ignored; typed
// itself and duplicates are never returned.
func Nearest(typed string, known []string) []string {
	t := strings.ToLower(typed)
	limit := max(2, len([]rune(t))/4)
	best := -1
	var near, prefixed []string
	for _, k := range known {
		lk := strings.ToLower(k)
		if k == "" || k == typed || slices.Contains(near, k) || slices.Contains(prefixed, k) {
			continue
		}
		// A distance as long as typed itself is a replacement, not a typo.
		if d := levenshtein.ComputeDistance(t, lk); d <= limit && d < len([]rune(t)) {
			switch {
			case best == -1 || d < best:
				best, near = d, []string{k}
			case d == best:
				near = append(near, k)
			}
			continue
		}
		if len(t) >= 3 && strings.HasPrefix(lk, t) {
			prefixed = append(prefixed, k)
		}
	}
	if len(near) == 0 {
		near = prefixed
	}
	slices.Sort(near)
	return near
}

// DidYouMean is "did you mean A?" or "did you mean A, B or C?" for the names
// Nearest finds, and "" when it finds none.
func DidYouMean(typed string, known []string) string {
	near := Nearest(typed, known)
	if len(near) == 0 {
		return ""
	}
	return "did you mean " + OrList(near) + "?"
}

// OrList writes names as "a", "a or b", "a, b or c".
func OrList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
