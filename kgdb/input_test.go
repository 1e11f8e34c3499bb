package kgdb_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
)

// TestParseIDsAndPriority: ids are positive whole numbers and a priority
// zero or more; a bad one is a *config.FieldError naming the field.
func TestParseIDsAndPriority(t *testing.T) {
	if got, err := kgdb.ParseIDs("item", []string{"1", "42"}); err != nil || !slices.Equal(got, []int64{1, 42}) {
		t.Errorf("ParseIDs(1, 42) = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "-3", "x", "1.5", ""} {
		_, err := kgdb.ParseIDs("content_id", []string{"7", bad})
		var fe *config.FieldError
		want := (&config.FieldError{Field: "content_id", Value: bad, Rule: "must be a positive whole number"}).Error()
		if !errors.As(err, &fe) || err.Error() != want {
			t.Errorf("ParseIDs(%q): %v, want %q", bad, err, want)
		}
	}
	if p, err := kgdb.ParsePriority("--priority", "0"); err != nil || p != 0 {
		t.Errorf("ParsePriority(0) = %d, %v", p, err)
	}
	if p, err := kgdb.ParsePriority("priority", "9"); err != nil || p != 9 {
		t.Errorf("ParsePriority(9) = %d, %v", p, err)
	}
	for _, bad := range []string{"-1", "high", "2.5"} {
		_, err := kgdb.ParsePriority("priority", bad)
		if err == nil || err.Error() != "invalid priority "+bad+": must be a whole number, zero or more" {
			t.Errorf("ParsePriority(%q): %v", bad, err)
		}
	}
}

// TestCheckPriority: the priority rule the CLI's flags, the dashboard's
// form and the database's operations share: zero or more, a bad one named
// by its field.
func TestCheckPriority(t *testing.T) {
	for _, p := range []int{0, 1, 1000} {
		if err := kgdb.CheckPriority("--priority", p); err != nil {
			t.Errorf("CheckPriority(%d): %v", p, err)
		}
	}
	var fe *config.FieldError
	if err := kgdb.CheckPriority("--priority", -2); !errors.As(err, &fe) || err.Error() != "invalid --priority -2: must be zero or more" {
		t.Errorf("CheckPriority(-2): %v", err)
	}
}
