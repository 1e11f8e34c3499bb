package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runDeps runs deps.sh JOB with test doubles of dpkg-query (which reports
// the packages in installed as installed), apt-get, id (which reports uid)
// and go on PATH, and returns what it printed, its exit code and the apt-get
// calls.
func runDeps(t *testing.T, job string, installed []string, uid string, withSudo bool) (out string, code int, calls string) {
	t.Helper()
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "calls")
	doubles := map[string]string{
		"dpkg-query": `eval "p=\${$#}"; case " $INSTALLED " in *" $p "*) printf installed ;; *) printf not-installed ;; esac`,
		"apt-get":    `echo "apt-get $*" >>"$CALLS"`,
		"id":         `echo "$UID_DOUBLE"`,
		"go":         `exit 0`,
	}
	if withSudo {
		doubles["sudo"] = `echo "sudo" >>"$CALLS"; exec "$@"`
	}
	for name, body := range doubles {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	// Only the doubles and the shell's basic tools: no real dpkg or apt.
	tools := t.TempDir()
	for _, tool := range []string{"basename", "cat"} {
		if p, err := exec.LookPath(tool); err == nil {
			os.Symlink(p, filepath.Join(tools, tool))
		}
	}
	cmd := exec.Command(sh, "deps.sh", job)
	cmd.Env = []string{"PATH=" + bin + ":" + tools, "CALLS=" + log, "INSTALLED=" + strings.Join(installed, " "), "UID_DOUBLE=" + uid}
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(log)
	return string(b), code, string(data)
}

// TestDepsInstallsOnlyWhatIsMissing: deps.sh names and installs exactly the
// packages its job needs that are not installed, and nothing when none is
// missing.
func TestDepsInstallsOnlyWhatIsMissing(t *testing.T) {
	build := []string{"gcc", "libc6-dev", "make", "git", "systemd", "dbus", "iproute2", "util-linux", "curl", "ca-certificates", "sqlite3"}
	out, code, calls := runDeps(t, "build", build, "0", false)
	if code != 0 || !strings.Contains(out, "every package the build job needs is installed") || calls != "" {
		t.Errorf("all installed: exit %d, %q, apt-get calls %q", code, out, calls)
	}

	// make demo on a machine without curl and sqlite3.
	var most []string
	for _, p := range build {
		if p != "curl" && p != "sqlite3" {
			most = append(most, p)
		}
	}
	out, code, calls = runDeps(t, "build", most, "0", false)
	if code != 0 || !strings.Contains(out, "installing what the build job needs and this machine lacks: curl sqlite3") {
		t.Errorf("two missing: exit %d, %q", code, out)
	}
	if calls != "apt-get update -qq\napt-get install -y -qq --no-install-recommends curl sqlite3\n" {
		t.Errorf("apt-get calls %q", calls)
	}

	// make test wants the test tools too.
	out, code, calls = runDeps(t, "test", build, "0", false)
	want := "lintian rpm rpmlint cpio bash-completion zsh fish groff-base dbus-user-session chromium openssh-client openssh-server postgresql redis-server haproxy nginx-light"
	if code != 0 || !strings.Contains(out, "lacks: "+want) || !strings.HasSuffix(calls, "--no-install-recommends "+want+"\n") {
		t.Errorf("test job: exit %d, %q, apt-get calls %q", code, out, calls)
	}

	// Not root: through sudo, or a clear error without it.
	_, code, calls = runDeps(t, "build", most, "1000", true)
	if code != 0 || !strings.HasPrefix(calls, "sudo\napt-get update") {
		t.Errorf("with sudo: exit %d, calls %q", code, calls)
	}
	out, code, calls = runDeps(t, "build", most, "1000", false)
	if code != 1 || !strings.Contains(out, "not root and no sudo") || calls != "" {
		t.Errorf("without sudo: exit %d, %q, calls %q", code, out, calls)
	}

	if out, code, _ := runDeps(t, "everything", nil, "0", false); code != 2 || !strings.Contains(out, "usage:") {
		t.Errorf("unknown job: exit %d, %q", code, out)
	}
}
