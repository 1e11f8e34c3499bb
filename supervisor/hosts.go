package supervisor

import "os"

// Hostname is this host's name as its workers report it (os.Hostname), ""
// when it cannot be read.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
