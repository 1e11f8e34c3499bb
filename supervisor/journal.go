package supervisor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/sdjournal"
)

// Journal reads a unit's log lines from journald.
type Journal interface {
	// Tail returns the last n lines of the unit's log.
	Tail(ctx context.Context, unit string, n int) ([]string, error)
	// Follow writes the last n lines, then new lines as they come, until ctx
	// ends.
	Follow(ctx context.Context, unit string, n int, w io.Writer) error
}

// SystemJournal reads the host's journal through libsystemd.
type SystemJournal struct{}

// open positions a journal on the entry n lines before the end of what the
// unit logged, and what systemd logged about the unit, as `journalctl -u`.
func (SystemJournal) open(unit string, n int) (*sdjournal.Journal, error) {
	j, err := sdjournal.NewJournal()
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	matches := []func() error{
		func() error { return j.AddMatch("_SYSTEMD_UNIT=" + unit) },
		j.AddDisjunction,
		func() error { return j.AddMatch("UNIT=" + unit) },
		func() error { return j.AddMatch("_PID=1") },
	}
	for _, m := range matches {
		if err := m(); err != nil {
			j.Close()
			return nil, fmt.Errorf("match journal for %s: %w", unit, err)
		}
	}
	if err := j.SeekTail(); err != nil {
		j.Close()
		return nil, fmt.Errorf("seek journal tail: %w", err)
	}
	// SeekTail points past the end; n+1 steps back lands before the n-th
	// last entry, so the following Next calls return exactly n entries.
	if _, err := j.PreviousSkip(uint64(n) + 1); err != nil {
		j.Close()
		return nil, fmt.Errorf("rewind journal: %w", err)
	}
	return j, nil
}

// Tail implements Journal.
func (s SystemJournal) Tail(ctx context.Context, unit string, n int) ([]string, error) {
	j, err := s.open(unit, n)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	var lines []string
	for ctx.Err() == nil {
		line, ok, err := nextLine(j)
		if err != nil || !ok {
			return lastN(lines, n), err
		}
		lines = append(lines, line)
	}
	return lastN(lines, n), ctx.Err()
}

// Follow implements Journal.
func (s SystemJournal) Follow(ctx context.Context, unit string, n int, w io.Writer) error {
	j, err := s.open(unit, n)
	if err != nil {
		return err
	}
	defer j.Close()
	for ctx.Err() == nil {
		line, ok, err := nextLine(j)
		if err != nil {
			return err
		}
		if !ok {
			j.Wait(250 * time.Millisecond)
			continue
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func lastN(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// nextLine formats the next entry like journalctl's short format.
func nextLine(j *sdjournal.Journal) (string, bool, error) {
	adv, err := j.Next()
	if err != nil {
		return "", false, fmt.Errorf("read journal: %w", err)
	}
	if adv == 0 {
		return "", false, nil
	}
	e, err := j.GetEntry()
	if err != nil {
		return "", false, fmt.Errorf("read journal entry: %w", err)
	}
	ts := time.UnixMicro(int64(e.RealtimeTimestamp)).Format(time.Stamp)
	ident := e.Fields["SYSLOG_IDENTIFIER"]
	if ident == "" {
		ident = e.Fields["_COMM"]
	}
	if pid := e.Fields["_PID"]; pid != "" {
		ident += "[" + pid + "]"
	}
	msg := strings.TrimRight(e.Fields["MESSAGE"], "\n")
	return fmt.Sprintf("%s %s: %s", ts, ident, msg), true, nil
}
