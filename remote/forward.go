package remote

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// ForwardArgs returns the command line args without its --host (or -H)
// flag and value, for the remote kato-manager. fs, the parsed flags of the
// command, says which flags take a value, so that a value that looks like
// --host stays where it is.
func ForwardArgs(args []string, fs *pflag.FlagSet) []string {
	takesValue := func(f *pflag.Flag) bool { return f != nil && f.NoOptDefVal == "" }
	var out []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return append(out, args[i:]...)
		case strings.HasPrefix(arg, "--"):
			name, _, inline := strings.Cut(arg[2:], "=")
			if name == "host" {
				if !inline {
					i++
				}
				continue
			}
			out = append(out, arg)
			if !inline && takesValue(fs.Lookup(name)) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			// A cluster of shorthands, as pflag reads it: flags without a
			// value, then perhaps one whose value is the rest or the next
			// argument.
			kept, takeNext := "-", false
			for j := 1; j < len(arg); j++ {
				c := arg[j : j+1]
				if c == "H" {
					if j+1 == len(arg) {
						i++ // its value is the next argument
					}
					break
				}
				kept += c
				if takesValue(fs.ShorthandLookup(c)) {
					kept += arg[j+1:]
					takeNext = j+1 == len(arg)
					break
				}
			}
			if kept != "-" {
				out = append(out, kept)
			}
			if takeNext && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		default:
			out = append(out, arg)
		}
	}
	return out
}

// WithJSON returns args asking for JSON: with --json before any "--",
// unless fs, the parsed flags of the command, has it already.
func WithJSON(args []string, fs *pflag.FlagSet) []string {
	if f := fs.Lookup("json"); f != nil && f.Changed {
		return args
	}
	end := slices.Index(args, "--")
	if end < 0 {
		end = len(args)
	}
	return slices.Concat(args[:end], []string{"--json"}, args[end:])
}

// Failure describes what went wrong on a host whose answer is missing: the
// error and what the host wrote to standard error, on one line.
func (r Result) Failure() string {
	msg := r.Err.Error()
	if s := strings.TrimSpace(r.Stderr); s != "" {
		msg += ": " + strings.ReplaceAll(s, "\n", "; ")
	}
	return msg
}

// PrefixLines writes each line of data to w after the host's name, as
// "HOST: line".
func PrefixLines(w io.Writer, host string, data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintf(w, "%s: %s\n", host, sc.Text())
	}
}

// WriteAll writes what each host printed, each line after the host's name:
// its standard output to stdout, its standard error to stderr.
func WriteAll(stdout, stderr io.Writer, results []Result) {
	for _, r := range results {
		PrefixLines(stdout, r.Host, r.Stdout)
		PrefixLines(stderr, r.Host, []byte(r.Stderr))
	}
}

// WriteEach writes what each host printed, as WriteAll does, and after a
// host's output "kato-manager: host HOST: ERR" to stderr when the command
// did not run there. It returns the worst exit status of the hosts, 1 for a
// host the command did not run on.
func WriteEach(stdout, stderr io.Writer, results []Result) int {
	worst := 0
	for _, r := range results {
		PrefixLines(stdout, r.Host, r.Stdout)
		PrefixLines(stderr, r.Host, []byte(r.Stderr))
		code, ran := ExitCode(r.Err)
		if !ran {
			fmt.Fprintf(stderr, "kato-manager: host %s: %v\n", r.Host, r.Err)
			code = 1
		}
		worst = max(worst, code)
	}
	return worst
}
