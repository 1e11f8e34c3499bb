package packaging

import (
	"os"
	"os/exec"
	"testing"
)

// needTool returns the path of the program name. Without it the test is
// skipped, or fails when CI is "true": CI installs every tool these tests
// use.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; .ci/run installs it", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}
