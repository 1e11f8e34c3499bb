package kgdb

import "io"

// What the external tests of root's access need to see of it.

// ReopeningStore is the store r uses now; nil when it has none.
func ReopeningStore(r *Reopening) Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.q
}

// WrapHelperInput replaces the pipe or connection c writes its requests
// to with wrap's answer, which writes to it.
func WrapHelperInput(c *Helper, wrap func(io.WriteCloser) io.WriteCloser) { c.in = wrap(c.in) }

// HasOp reports whether name is an operation of the table.
func HasOp(name string) bool {
	_, ok := ops[name]
	return ok
}
