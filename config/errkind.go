package config

import (
	"errors"
	"fmt"
)

// ErrorKind is the class of an error a person is shown: the CLI's exit code
// and the web's HTTP status derive from it, through kinds.
type ErrorKind string

// The kinds of error.
const (
	// KindFailed is anything else: the work was tried and did not succeed.
	KindFailed ErrorKind = "failed"
	// KindInput is bad input (a *FieldError, an unknown or ambiguous
	// instance): nothing was changed.
	KindInput ErrorKind = "input"
	// KindNotFound is a record named by id that does not exist (a
	// *NotFoundError): nothing was changed.
	KindNotFound ErrorKind = "not-found"
	// KindConflict is a request the current state refuses (ErrConflict).
	KindConflict ErrorKind = "conflict"
	// KindUnavailable is a service or helper that could not be reached
	// (ErrUnavailable): trying again later may succeed.
	KindUnavailable ErrorKind = "unavailable"
)

// kinds is the one list from which exit codes and HTTP statuses derive.
var kinds = map[ErrorKind]struct{ exit, http int }{
	KindFailed:      {1, 500},
	KindInput:       {2, 400},
	KindNotFound:    {2, 404},
	KindConflict:    {1, 409},
	KindUnavailable: {1, 503},
}

// ExitCode is the exit status of a command that failed with an error of
// kind k.
func (k ErrorKind) ExitCode() int { return kinds[k.known()].exit }

// HTTPStatus is the status of a web request that failed with an error of
// kind k.
func (k ErrorKind) HTTPStatus() int { return kinds[k.known()].http }

func (k ErrorKind) known() ErrorKind {
	if _, ok := kinds[k]; ok {
		return k
	}
	return KindFailed
}

// Errors marking a kind; wrap them (or return an error whose Is reports
// them) to give an error its kind.
var (
	// ErrConflict marks a request the current state refuses.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable marks a service or helper that could not be reached.
	ErrUnavailable = errors.New("unavailable")
)

// ErrorKindOf returns the kind of err: that of the first error in its
// chain with an ErrorKind method (one that came over a process boundary),
// else the one its types and marks say. Anything unmarked is KindFailed.
func ErrorKindOf(err error) ErrorKind {
	var fe *FieldError
	var nf *NotFoundError
	var kinded interface{ ErrorKind() ErrorKind }
	switch {
	case errors.As(err, &kinded):
		return kinded.ErrorKind().known()
	case errors.Is(err, ErrMalformed):
		return KindFailed // a file to mend, even if a field names where
	case errors.As(err, &nf):
		return KindNotFound
	case errors.As(err, &fe), errors.Is(err, ErrNotFound), errors.Is(err, ErrAmbiguous):
		return KindInput
	case errors.Is(err, ErrConflict):
		return KindConflict
	case errors.Is(err, ErrUnavailable):
		return KindUnavailable
	}
	return KindFailed
}

// NotFoundError is a record named by the operator that does not exist:
// the field that named it, the value given and what is missing, as in
// "invalid CONTENT_ID 99: no such document". Nothing was changed.
type NotFoundError struct {
	Field string
	Value string
	Rule  string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("invalid %s %s: %s", e.Field, displayValue(e.Value), e.Rule)
}
