package sdharness

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Command returns a command that runs name with args inside the machine: in
// its namespaces and root, with PATH, HOME and LANG set for the machine
// rather than inherited from the host. The returned command fails to start
// once the machine is closed.
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	nsArgs := []string{
		"--target", strconv.Itoa(m.pid),
		"--mount", "--pid", "--net", "--uts", "--ipc", "--root", "--wd",
		"--", name,
	}
	cmd := exec.CommandContext(ctx, m.nsenter, append(nsArgs, args...)...)
	cmd.Env = []string{"PATH=" + innerPATH, "HOME=/root", "LANG=C.UTF-8"}
	if err := m.checkOpen(); err != nil {
		cmd.Err = err
	}
	return cmd
}

// Run runs name with args inside the machine and returns its output. The
// error names the command and includes its exit status and standard error.
func (m *Machine) Run(ctx context.Context, name string, args ...string) (stdout, stderr string, err error) {
	var outBuf, errBuf bytes.Buffer
	cmd := m.Command(ctx, name, args...)
	cmd.Stdout = &outBuf
	cmd.Stderr = &errBuf
	if err := cmd.Run(); err != nil {
		line := strings.Join(append([]string{name}, args...), " ")
		return outBuf.String(), errBuf.String(), fmt.Errorf("run %q in machine pid %d: %w: stderr: %s",
			line, m.pid, err, strings.TrimSpace(errBuf.String()))
	}
	return outBuf.String(), errBuf.String(), nil
}
