package kgdb

import (
	"errors"

	"github.com/kato-manager/kato-manager/config"
)

// WireError is an error as the helper sends it: its kind, its message,
// and for bad input or a missing record the field, value and rule, so
// that the other side gets back an error of the same type and kind.
type WireError struct {
	Kind    config.ErrorKind `json:"kind"`
	Message string           `json:"message"`
	Field   string           `json:"field,omitempty"`
	Value   string           `json:"value,omitempty"`
	Rule    string           `json:"rule,omitempty"`
}

// EncodeError returns err as the helper sends it; nil for nil.
func EncodeError(err error) *WireError {
	if err == nil {
		return nil
	}
	w := &WireError{Kind: config.ErrorKindOf(err), Message: err.Error()}
	var fe *config.FieldError
	var nf *config.NotFoundError
	switch {
	case errors.As(err, &nf):
		w.Field, w.Value, w.Rule = nf.Field, nf.Value, nf.Rule
	case errors.As(err, &fe):
		w.Field, w.Value, w.Rule = fe.Field, fe.Value, fe.Rule
	}
	return w
}

// Err returns the error w stands for: a *config.FieldError or a
// *config.NotFoundError when w names a field, else an error with w's
// message whose kind (config.ErrorKindOf) is w's.
func (w *WireError) Err() error {
	var typed error
	switch {
	case w.Kind == config.KindNotFound && w.Field != "":
		typed = &config.NotFoundError{Field: w.Field, Value: w.Value, Rule: w.Rule}
	case w.Kind == config.KindInput && w.Field != "":
		typed = &config.FieldError{Field: w.Field, Value: w.Value, Rule: w.Rule}
	default:
		return &kindError{kind: w.Kind, msg: w.Message}
	}
	if typed.Error() == w.Message {
		return typed
	}
	return &wrapped{msg: w.Message, err: typed} // the context it was wrapped in
}

// wrapped is a typed error with the message it had where it was wrapped.
type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.err }

// kindError is an error that came over the helper's connection without a
// type of its own: its message and kind.
type kindError struct {
	kind config.ErrorKind
	msg  string
}

func (e *kindError) Error() string { return e.msg }

// ErrorKind reports the kind the error had where it was made.
func (e *kindError) ErrorKind() config.ErrorKind { return e.kind }
