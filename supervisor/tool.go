package supervisor

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// execTool runs a host tool and returns its output in the error when it
// fails.
func execTool(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
