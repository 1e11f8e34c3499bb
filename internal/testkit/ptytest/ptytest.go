// Package ptytest gives a test a pseudo-terminal: a printer that behaves
// differently on a terminal (redrawn lines, colour) writes to its slave
// end, and the test reads what it wrote from its master end.
package ptytest

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Open returns both ends of a new pseudo-terminal, closed when the test
// ends. Where there are none it skips the test, and fails it when CI=true.
func Open(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminals here: %v", err)
		}
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("number of the pseudo-terminal: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// Written is what a printer wrote to the terminal: everything the
// master end reads until the slave end is closed, with the terminal's
// "\r\n" for "\n" undone.
func Written(t *testing.T, master, slave *os.File) string {
	t.Helper()
	slave.Close()
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if err != nil { // EIO once the slave end is closed and drained
			break
		}
	}
	return strings.ReplaceAll(out.String(), "\r\n", "\n")
}
