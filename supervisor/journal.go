package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/internal/termtext"
)

// Journal reads a unit's log lines from journald.
type Journal interface {
	// Tail returns the last n lines of the unit's log.
	Tail(ctx context.Context, unit string, n int) ([]string, error)
	// Follow writes the last n lines, then new lines as they come, until ctx
	// ends.
	Follow(ctx context.Context, unit string, n int, w io.Writer) error
}

// JournalQuery says which of a unit's log lines to read.
type JournalQuery struct {
	// Unit is what the lines are of: what the unit logged and what systemd
	// logged about it, as `journalctl -u`.
	Unit string
	// Lines is how many of the last lines to show; negative means all.
	Lines int
	// Since, when not zero, leaves out lines logged before it.
	Since time.Time
	// Follow keeps reading new lines until the context ends.
	Follow bool

	// afterCursor, when set, starts after the entry with this cursor.
	afterCursor string
}

// SystemJournal reads the host's journal through `journalctl
// --output=json`, the interface systemd documents as stable, so no C
// library is needed.
type SystemJournal struct {
	// Command is the journalctl program and the arguments it always gets;
	// empty means "journalctl".
	Command []string
	// User reads the invoking user's journal and the units of the user's
	// manager (journalctl --user --user-unit=).
	User bool
}

// args is the journalctl command line of q.
func (j SystemJournal) args(q JournalQuery) []string {
	argv := append([]string(nil), j.Command...)
	if len(argv) == 0 {
		argv = []string{"journalctl"}
	}
	argv = append(argv, "--output=json", "--all", "--no-pager", "--quiet")
	if j.User {
		argv = append(argv, "--user", "--user-unit="+q.Unit)
	} else {
		argv = append(argv, "--unit="+q.Unit)
	}
	if q.Lines >= 0 {
		argv = append(argv, "--lines="+strconv.Itoa(q.Lines))
	}
	if q.afterCursor != "" {
		argv = append(argv, "--after-cursor="+q.afterCursor)
	} else if !q.Since.IsZero() {
		// @SECONDS.MICROS is journalctl's own way to name an instant.
		us := q.Since.UnixMicro()
		argv = append(argv, fmt.Sprintf("--since=@%d.%06d", us/1e6, us%1e6))
	}
	if q.Follow {
		argv = append(argv, "--follow")
	}
	return argv
}

// Read calls emit with each line q selects, formatted as journalctl's
// short format does, oldest first. With q.Follow it returns when ctx ends,
// with nil.
func (j SystemJournal) Read(ctx context.Context, q JournalQuery, emit func(line string) error) error {
	if q.Lines == 0 && !q.Follow {
		return nil
	}
	if q.Since.IsZero() || q.Lines < 0 {
		return j.read(ctx, q, func(line, _ string) error { return emit(line) })
	}
	// journalctl shows the first lines after --since; the last ones are
	// wanted, as without it. Read them all, keep the last, and follow from
	// the last one's cursor.
	var last []string
	cursor := ""
	all := q
	all.Lines, all.Follow = -1, false
	err := j.read(ctx, all, func(line, c string) error {
		if last = append(last, line); len(last) > q.Lines {
			last = last[1:]
		}
		cursor = c
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range last {
		if err := emit(l); err != nil {
			return err
		}
	}
	if !q.Follow {
		return nil
	}
	q.Lines, q.afterCursor = -1, cursor
	return j.read(ctx, q, func(line, _ string) error { return emit(line) })
}

// read runs journalctl for q and calls emit with each line and its
// entry's cursor.
func (j SystemJournal) read(ctx context.Context, q JournalQuery, emit func(line, cursor string) error) error {
	argv := j.args(q)
	run, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(run, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	sc := bufio.NewScanner(out)
	// --all keeps long messages whole: allow lines of up to 16 MiB.
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	var emitErr error
	for sc.Scan() {
		line, cursor, err := formatEntry(sc.Bytes())
		if err == nil {
			err = emit(line, cursor)
		}
		if err != nil {
			emitErr = err
			cancel()
			break
		}
	}
	if emitErr == nil && sc.Err() != nil {
		emitErr = fmt.Errorf("read journal: %w", sc.Err())
		cancel()
	}
	io.Copy(io.Discard, out)
	waitErr := cmd.Wait()
	switch {
	case emitErr != nil:
		return emitErr
	case ctx.Err() != nil && q.Follow:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case waitErr != nil:
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = waitErr.Error()
		}
		return fmt.Errorf("%s: %s", strings.Join(argv, " "), msg)
	}
	return nil
}

// Tail implements Journal.
func (j SystemJournal) Tail(ctx context.Context, unit string, n int) ([]string, error) {
	lines := []string{}
	err := j.Read(ctx, JournalQuery{Unit: unit, Lines: n}, func(line string) error {
		lines = append(lines, line)
		return nil
	})
	return lines, err
}

// Follow implements Journal.
func (j SystemJournal) Follow(ctx context.Context, unit string, n int, w io.Writer) error {
	return j.Read(ctx, JournalQuery{Unit: unit, Lines: n, Follow: true}, func(line string) error {
		_, err := io.WriteString(w, line+"\n")
		return err
	})
}

// formatEntry formats one entry of journalctl's JSON output like its short
// format, "Jan 02 15:04:05 ident[pid]: message", and returns its cursor.
func formatEntry(data []byte) (line, cursor string, err error) {
	var e map[string]json.RawMessage
	if err := json.Unmarshal(data, &e); err != nil {
		return "", "", fmt.Errorf("read journal entry: %w", err)
	}
	field := func(name string) string { return journalField(e[name]) }
	us, err := strconv.ParseInt(field("__REALTIME_TIMESTAMP"), 10, 64)
	if err != nil {
		return "", "", fmt.Errorf("read journal entry: invalid __REALTIME_TIMESTAMP %q", field("__REALTIME_TIMESTAMP"))
	}
	ident := field("SYSLOG_IDENTIFIER")
	if ident == "" {
		ident = field("_COMM")
	}
	if pid := field("_PID"); pid != "" {
		ident += "[" + pid + "]"
	}
	// The processor wrote the message and chose its identifier: both are
	// escaped for the terminal, and the lines of a message after its first
	// are indented under it, as journalctl does, so that none passes for an
	// entry of its own.
	prefix := fmt.Sprintf("%s %s: ", time.UnixMicro(us).Format(time.Stamp), termtext.Line(ident))
	msg := termtext.Text(strings.TrimRight(field("MESSAGE"), "\n"))
	msg = strings.ReplaceAll(msg, "\n", "\n"+strings.Repeat(" ", utf8.RuneCountInString(prefix)))
	return prefix + msg, field("__CURSOR"), nil
}

// journalField decodes a field of journalctl's JSON output: a string, an
// array of bytes for a value that is not valid UTF-8, an array of those for
// a field an entry has more than once (the first is taken), or null for a
// value too large to show.
func journalField(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b []byte
	var nums []int
	if json.Unmarshal(raw, &nums) == nil {
		for _, n := range nums {
			b = append(b, byte(n))
		}
		return string(b)
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		return journalField(many[0])
	}
	return ""
}

// NewJournalQuery is the query of `logs`: the last lines (0 or more) and,
// when follow, the new ones; with since (ParseSince; nil when not given)
// only those logged since then, all of them unless linesGiven.
func NewJournalQuery(lines int, linesGiven bool, since *string, follow bool, now time.Time) (JournalQuery, error) {
	if lines < 0 {
		return JournalQuery{}, &config.FieldError{Field: "lines", Value: fmt.Sprint(lines), Rule: "must be 0 or more"}
	}
	q := JournalQuery{Lines: lines, Follow: follow}
	if since != nil {
		t, err := ParseSince(*since, now)
		if err != nil {
			return JournalQuery{}, err
		}
		q.Since = t
		if !linesGiven {
			q.Lines = -1
		}
	}
	return q, nil
}

// ParseSince reads the value of `logs --since` as an instant before now:
// "2006-01-02", "2006-01-02 15:04", "2006-01-02 15:04:05" (local time),
// RFC 3339, "today", "yesterday", "now", or a duration ago ("10m", "2h30m",
// "-10m", "10m ago"). It is ours rather than journalctl's own parsing:
// journalctl 252 refuses a bare duration ("10m") and RFC 3339 with a zone
// ("…T08:09:10Z"), takes future times ("tomorrow", "+5h"), and would say so
// only once it runs.
func ParseSince(s string, now time.Time) (time.Time, error) {
	bad := func(rule string) (time.Time, error) {
		return time.Time{}, &config.FieldError{Field: "since", Value: s, Rule: rule}
	}
	v := strings.TrimSpace(s)
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	switch v {
	case "":
		return bad("must name a time")
	case "now":
		return now, nil
	case "today":
		return midnight, nil
	case "yesterday":
		return midnight.AddDate(0, 0, -1), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{time.DateOnly, "2006-01-02 15:04", time.DateTime} {
		if t, err := time.ParseInLocation(layout, v, now.Location()); err == nil {
			return t, nil
		}
	}
	ago := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(v, "-"), "ago"))
	d, err := time.ParseDuration(ago)
	if err != nil {
		return bad("must be a date (2006-01-02[ 15:04[:05]]), RFC 3339, today, yesterday, now, or a duration ago such as 10m")
	}
	if d < 0 {
		return bad("must not be in the future")
	}
	return now.Add(-d), nil
}
