package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckToolchain(t *testing.T) {
	// The test binary itself was built by the toolchain running the tests.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkToolchain(self, "../go.mod"); err != nil {
		t.Errorf("a binary of the toolchain running the tests: %v", err)
	}
	newer := filepath.Join(t.TempDir(), "go.mod")
	if err := os.WriteFile(newer, []byte("module x\n\ngo 1.26\n\ntoolchain go99.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkToolchain(self, newer); err == nil || !strings.Contains(err.Error(), "GOTOOLCHAIN=go99.0.1") {
		t.Errorf("a binary older than the toolchain line: %v", err)
	}
}
