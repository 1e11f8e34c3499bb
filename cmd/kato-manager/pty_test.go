package main

import (
	"os"
	"testing"

	"github.com/kato-manager/kato-manager/internal/testkit/ptytest"
)

// openPTY returns both ends of a new pseudo-terminal (ptytest.Open).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	return ptytest.Open(t)
}

// written is what was written to the terminal (ptytest.Written).
func written(t *testing.T, master, slave *os.File) string {
	t.Helper()
	return ptytest.Written(t, master, slave)
}
