// Package remote runs kato-manager commands on other hosts over SSH, the way
// `systemctl -H` reaches a remote systemd: through the system's ssh client,
// with the remote host's own kato-manager doing the work against its own
// registry, lock and units. Nothing of ours runs there but kato-manager
// itself, and no state is copied: what a command prints and its exit status
// are the remote command's.
//
// The choices, for the README:
//   - ssh runs with BatchMode=yes: a host that would ask for a password or
//     a host key confirmation fails at once instead of waiting for input;
//     keys and known_hosts are the operator's ssh configuration, as for any
//     ssh. Agent and X11 forwarding are off (-a -x), no terminal (-T).
//   - The remote program is "kato-manager" on the remote login's PATH
//     (sshd's default PATH has /usr/bin, where the packages install it, and
//     /usr/local/bin); the remote login shell must be a POSIX shell, which
//     parses the command line this package quotes.
//   - ssh's own exit status 255 means the host was not reached: it becomes
//     ErrUnreachable, never a remote exit status.
package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"

	"github.com/kato-manager/kato-manager/config"
)

// Program is the command run on the remote host, found on the remote
// login's PATH.
const Program = "kato-manager"

// sshExitUnreachable is the status with which ssh reports that it could not
// connect, authenticate or run the command.
const sshExitUnreachable = 255

// shellExitNotFound is the status with which a POSIX shell reports a
// command it did not find.
const shellExitNotFound = 127

// ErrUnreachable reports that ssh could not reach a host or log in.
var ErrUnreachable = errors.New("host unreachable over ssh")

// ErrNoProgram reports that the remote host has no kato-manager on its
// PATH.
var ErrNoProgram = errors.New("kato-manager not found on the remote host")

// ExitError is a remote command that ran and exited non-zero; what it had to
// say went to its standard error.
type ExitError struct {
	Host string
	Code int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s on %s exited with status %d", Program, e.Host, e.Code)
}

// ExitCode is the exit status of a remote command that ran, from the error
// Run gave: 0 for none, an *ExitError's code; ran is false when the error
// is another (the host not reached, no kato-manager there).
func ExitCode(err error) (code int, ran bool) {
	var exit *ExitError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &exit):
		return exit.Code, true
	default:
		return 0, false
	}
}

// hostRule is the rule of a --host value.
const hostRule = "must be [USER@]HOST, or several of them separated by commas: letters, digits and . _ - : [ ] %, not starting with -"

// ParseHosts splits a --host value into its hosts, each [USER@]HOST, and
// checks them: a host must not look like an ssh option or carry characters
// a shell or ssh would read as something else.
func ParseHosts(value string) ([]string, error) {
	var hosts []string
	for _, h := range strings.Split(value, ",") {
		if err := config.CheckHost(h); err != nil {
			return nil, &config.FieldError{Field: "host", Value: value, Rule: hostRule + ": " + err.Error()}
		}
		for _, seen := range hosts {
			if seen == h {
				return nil, &config.FieldError{Field: "host", Value: value, Rule: hostRule + ": " + h + " is named twice"}
			}
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// Quote quotes s for a POSIX shell: as it is when it holds only characters
// no shell treats specially, in single quotes otherwise.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+./,:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CommandLine is the command line the remote shell runs for args: Program
// and args, each quoted.
func CommandLine(args []string) string {
	words := []string{Program}
	for _, a := range args {
		words = append(words, Quote(a))
	}
	return strings.Join(words, " ")
}

// Command returns the ssh command that runs kato-manager with args on host.
// ssh is looked up on PATH when the command starts.
func Command(ctx context.Context, host string, args []string) *exec.Cmd {
	return exec.CommandContext(ctx, "ssh", "-o", "BatchMode=yes", "-T", "-a", "-x", "--", host, CommandLine(args))
}

// Run runs kato-manager with args on host, connecting the remote command to
// stdin, stdout and stderr. It returns nil when the remote command exits 0,
// an *ExitError with its status when it exits otherwise, and an error
// wrapping ErrUnreachable or ErrNoProgram when it never ran.
func Run(ctx context.Context, host string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := Command(ctx, host, args)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	return classify(host, cmd.Run())
}

// classify turns the result of an ssh command into Run's errors.
func classify(host string, err error) error {
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("run ssh for %s: %w", host, err)
	}
	switch code := exit.ExitCode(); code {
	case sshExitUnreachable:
		return fmt.Errorf("%s: %w (ssh exited with status 255; its message is above): check that sshd runs there and that your key and known_hosts let `ssh -o BatchMode=yes %s true` in", host, ErrUnreachable, host)
	case shellExitNotFound:
		return fmt.Errorf("%s: %w: install it there (the packages put it in /usr/bin)", host, ErrNoProgram)
	case -1:
		return fmt.Errorf("ssh for %s: %w", host, err)
	default:
		return &ExitError{Host: host, Code: code}
	}
}

// Result is what one host answered in Each.
type Result struct {
	Host   string
	Stdout []byte
	Stderr string
	// Err is nil, an *ExitError, or an error wrapping ErrUnreachable or
	// ErrNoProgram, as from Run.
	Err error
}

// Each runs kato-manager with args on every host at once, without input,
// and returns their results in the order of hosts.
func Each(ctx context.Context, hosts []string, args []string) []Result {
	return EachWith(ctx, hosts, func(string) []string { return args }, nil)
}

// EachWith is Each with the arguments argsOf gives for each host and input
// on every host's standard input (none when nil).
func EachWith(ctx context.Context, hosts []string, argsOf func(host string) []string, input []byte) []Result {
	results := make([]Result, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			var stdin io.Reader
			if input != nil {
				stdin = bytes.NewReader(input)
			}
			var out, errb bytes.Buffer
			err := Run(ctx, h, argsOf(h), stdin, &out, &errb)
			results[i] = Result{Host: h, Stdout: out.Bytes(), Stderr: errb.String(), Err: err}
		})
	}
	wg.Wait()
	return results
}
