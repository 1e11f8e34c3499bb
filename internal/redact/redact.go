// Package redact hides the credentials a URL may carry, for output, logs
// and reports.
package redact

import (
	"net/url"
	"strings"
)

// redacted stands for the user-info of a URL wherever one is shown.
const redacted = "REDACTED"

// URL returns s with the user-info of the URL (user name and
// password, which carry credentials in a MongoDB, KG service or PostgreSQL
// URL), and a password= parameter, replaced by REDACTED, for output, logs and reports. Text that does not
// parse as a URL is redacted up to its last '@' after the scheme, so a
// malformed URL in an error message does not leak its password either.
func URL(s string) string {
	if u, err := url.Parse(s); err == nil {
		q := u.Query()
		if u.User == nil && !q.Has("password") {
			return s
		}
		if u.User != nil {
			u.User = url.User(redacted)
		}
		// A PostgreSQL URL may carry its password as a parameter.
		if q.Has("password") {
			q.Set("password", redacted)
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return s
	}
	return scheme + "://" + redacted + rest[at:]
}
