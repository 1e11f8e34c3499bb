package queue

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxMessageBytes bounds the text the queue stores in error_message and
// skipped_reason: enough for any message of the worker with the start of
// what the KG service said, while a service that answers with a whole web
// page or a stack trace cannot fill the database or every listing of it.
const MaxMessageBytes = 4096

// BoundMessage returns s as the queue stores it: valid UTF-8 (invalid bytes
// become U+FFFD) and at most n bytes, cut on a character boundary and
// marked with how long it was when it is longer.
func BoundMessage(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	mark := "… [cut: " + strconv.Itoa(len(s)) + " bytes in all]"
	keep := max(n-len(mark), 0)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + mark
}
