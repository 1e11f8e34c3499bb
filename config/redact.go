package config

import "github.com/kato-manager/kato-manager/internal/redact"

// RedactURL returns s with the credentials of the URL replaced by
// REDACTED, for output, logs and reports (see redact.URL).
func RedactURL(s string) string { return redact.URL(s) }
