package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstallInstallsManPagesAndCompletions: after `make install`, man
// finds kato-manager's page under the prefix, and the bash, zsh and fish
// completions are where those shells look under it.
func TestMakeInstallInstallsManPagesAndCompletions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	makePath := needTool(t, "make")
	manPath := needTool(t, "man")
	dest := t.TempDir()
	cmd := exec.Command(makePath, "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	prefix := filepath.Join(dest, "usr/local")
	for _, p := range []string{
		"share/man/man1/kato-manager.1",
		"share/man/man1/kato-manager-start.1",
		"share/bash-completion/completions/kato-manager",
		"share/zsh/site-functions/_kato-manager",
		"share/fish/vendor_completions.d/kato-manager.fish",
	} {
		info, err := os.Stat(filepath.Join(prefix, p))
		if err != nil {
			t.Errorf("make install did not install %s: %v", p, err)
			continue
		}
		if info.Mode().Perm() != 0o644 || info.Size() == 0 {
			t.Errorf("%s: mode %v, %d bytes", p, info.Mode().Perm(), info.Size())
		}
	}
	man := exec.Command(manPath, "-M", filepath.Join(prefix, "share/man"), "kato-manager-start")
	man.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=200")
	out, err := man.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "health request") {
		t.Errorf("man kato-manager-start: %v\n%s", err, out)
	}
}
