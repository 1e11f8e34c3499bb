package fleet

import (
	"fmt"
	"io"
	"os"
)

// StdinName is the name of a fleet file read from standard input that
// comes without one: YAML, which JSON is too.
const StdinName = "stdin.yaml"

// MaxStdinBytes bounds a fleet file read from standard input.
const MaxStdinBytes = 16 << 20

// ReadInput reads the fleet file file, "-" being stdin, and returns the
// name it goes by, for its format and its errors, and its content. A file
// read from stdin goes by stdinName, or StdinName when that is "", and may
// hold at most MaxStdinBytes.
func ReadInput(file, stdinName string, stdin io.Reader) (name string, data []byte, err error) {
	name = file
	if file == "-" {
		name = StdinName
		if stdinName != "" {
			name = stdinName
		}
		data, err = io.ReadAll(io.LimitReader(stdin, MaxStdinBytes+1))
		if err == nil && len(data) > MaxStdinBytes {
			err = fmt.Errorf("more than %d bytes", MaxStdinBytes)
		}
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return "", nil, fmt.Errorf("read fleet file %s: %w", name, err)
	}
	return name, data, nil
}
