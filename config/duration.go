package config

import "time"

// PositiveDuration checks a duration a person gave (a --timeout): one that
// is not greater than zero is a *FieldError of field, never "the default".
func PositiveDuration(field string, d time.Duration) error {
	if d <= 0 {
		return &FieldError{Field: field, Value: d.String(), Rule: "must be greater than 0"}
	}
	return nil
}
