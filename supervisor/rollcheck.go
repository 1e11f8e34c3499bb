package supervisor

import (
	"fmt"
	"strconv"

	"github.com/kato-manager/kato-manager/config"
)

// CheckSurge checks a roll's surge: 0 to MaxReplicas extra members.
func CheckSurge(surge int) error {
	if surge < 0 || surge > MaxReplicas {
		return &config.FieldError{Field: "--surge", Value: strconv.Itoa(surge), Rule: fmt.Sprintf("must be between 0 and %d", MaxReplicas)}
	}
	return nil
}

// Check checks a rolling restart's options before anything is asked: the
// surge (CheckSurge), and MaxUnavailable, which is at least 0 with a
// surge, else at least 1 when given (maxUnavailableGiven: it is lowered to
// leave one member serving).
func (o RollOptions) Check(maxUnavailableGiven bool) error {
	if err := CheckSurge(o.Surge); err != nil {
		return err
	}
	switch {
	case o.Surge > 0 && o.MaxUnavailable < 0:
		return &config.FieldError{Field: "--max-unavailable", Value: strconv.Itoa(o.MaxUnavailable), Rule: "must be at least 0"}
	case o.Surge == 0 && maxUnavailableGiven && o.MaxUnavailable < 1:
		return &config.FieldError{Field: "--max-unavailable", Value: strconv.Itoa(o.MaxUnavailable), Rule: "must be at least 1 (it is lowered to leave one member serving), or 0 with --surge 1 or more"}
	}
	return nil
}
