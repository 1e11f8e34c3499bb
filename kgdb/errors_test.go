package kgdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/kato-manager/kato-manager/config"
)

// TestWireErrorsKeepTheirKind: an error sent as the helper sends it comes
// back with its message and kind, and bad input and a missing record with
// their types and fields.
func TestWireErrorsKeepTheirKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		kind config.ErrorKind
	}{
		{"field", fmt.Errorf("requeue: %w", &config.FieldError{Field: "PRIORITY", Value: "-1", Rule: "must be zero or more"}), config.KindInput},
		{"not found", &config.NotFoundError{Field: "CONTENT_ID", Value: "99", Rule: "no such document"}, config.KindNotFound},
		{"conflict", fmt.Errorf("copy: %w", config.ErrConflict), config.KindConflict},
		{"unavailable", fmt.Errorf("kg service: %w", config.ErrUnavailable), config.KindUnavailable},
		{"ambiguous instance", fmt.Errorf("name x: %w", config.ErrAmbiguous), config.KindInput},
		{"anything else", errors.New("disk full"), config.KindFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(EncodeError(tc.err))
			if err != nil {
				t.Fatal(err)
			}
			var w WireError
			if err := json.Unmarshal(b, &w); err != nil {
				t.Fatal(err)
			}
			got := w.Err()
			if got.Error() != tc.err.Error() {
				t.Errorf("message %q, want %q", got, tc.err)
			}
			if k := config.ErrorKindOf(got); k != tc.kind || k != config.ErrorKindOf(tc.err) {
				t.Errorf("kind %s, want %s", k, tc.kind)
			}
			var fe *config.FieldError
			var nf *config.NotFoundError
			if errors.As(tc.err, &fe) != errors.As(got, &fe) || errors.As(tc.err, &nf) != errors.As(got, &nf) {
				t.Errorf("type %T, sent %T", got, tc.err)
			}
		})
	}
	if EncodeError(nil) != nil {
		t.Error("EncodeError(nil) is not nil")
	}
}

// TestExitCodesAndStatuses: the one list gives the CLI's exit code and the
// web's status of each kind; an unknown kind is a failure.
func TestExitCodesAndStatuses(t *testing.T) {
	for _, tc := range []struct {
		kind       config.ErrorKind
		exit, http int
	}{
		{config.KindFailed, 1, 500}, {config.KindInput, 2, 400}, {config.KindNotFound, 2, 404},
		{config.KindConflict, 1, 409}, {config.KindUnavailable, 1, 503}, {"bogus", 1, 500},
	} {
		if tc.kind.ExitCode() != tc.exit || tc.kind.HTTPStatus() != tc.http {
			t.Errorf("%s: exit %d, status %d; want %d, %d", tc.kind, tc.kind.ExitCode(), tc.kind.HTTPStatus(), tc.exit, tc.http)
		}
	}
}
