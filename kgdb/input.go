package kgdb

import (
	"strconv"

	"github.com/kato-manager/kato-manager/config"
)

// ParseIDs parses positive queue row or content IDs given as text (the
// CLI's arguments, a field of the dashboard's form); field names them in
// the error.
func ParseIDs(field string, args []string) ([]int64, error) {
	out := make([]int64, 0, len(args))
	for _, s := range args {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id < 1 {
			return nil, &config.FieldError{Field: field, Value: s, Rule: "must be a positive whole number"}
		}
		out = append(out, id)
	}
	return out, nil
}

// CheckPriority checks a queue priority: zero or more; field names it in
// the error.
func CheckPriority(field string, priority int) error {
	if priority < 0 {
		return &config.FieldError{Field: field, Value: strconv.Itoa(priority), Rule: "must be zero or more"}
	}
	return nil
}

// ParsePriority parses a queue priority given as text (CheckPriority).
func ParsePriority(field, s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || CheckPriority(field, p) != nil {
		return 0, &config.FieldError{Field: field, Value: s, Rule: "must be a whole number, zero or more"}
	}
	return p, nil
}
