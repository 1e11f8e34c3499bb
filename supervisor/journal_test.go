package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

func TestJournalArgs(t *testing.T) {
	since := time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		q    JournalQuery
		want []string
	}{
		{JournalQuery{Unit: "kato@a.service", Lines: 50},
			[]string{"journalctl", "--output=json", "--all", "--no-pager", "--quiet", "--unit=kato@a.service", "--lines=50"}},
		{JournalQuery{Unit: "kato@a.service", Lines: -1, Since: since, Follow: true},
			[]string{"journalctl", "--output=json", "--all", "--no-pager", "--quiet", "--unit=kato@a.service", "--since=@1796119200.123456", "--follow"}},
	} {
		if got := (SystemJournal{}).args(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.q, got, tc.want)
		}
	}
}

// TestUserJournalArgs reads the units of the user's manager from the
// user's journal.
func TestUserJournalArgs(t *testing.T) {
	got := (SystemJournal{User: true}).args(JournalQuery{Unit: "kato@a.service", Lines: 5})
	want := []string{"journalctl", "--output=json", "--all", "--no-pager", "--quiet", "--user", "--user-unit=kato@a.service", "--lines=5"}
	if !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestFormatEntry(t *testing.T) {
	ts := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	us := ts.UnixMicro()
	for _, tc := range []struct {
		entry, want string
	}{
		{`{"__REALTIME_TIMESTAMP":"` + strconv.FormatInt(us, 10) + `","SYSLOG_IDENTIFIER":"kato","_PID":"42","MESSAGE":"ready on 8001\n"}`,
			"Mar  4 05:06:07 kato[42]: ready on 8001"},
		// No identifier: the command name; no pid: none shown.
		{`{"__REALTIME_TIMESTAMP":"` + strconv.FormatInt(us, 10) + `","_COMM":"fakeprocessor","MESSAGE":"x"}`, "Mar  4 05:06:07 fakeprocessor: x"},
		// A message that is not UTF-8 comes as bytes; a field given twice as
		// an array; a value too large as null.
		{`{"__REALTIME_TIMESTAMP":"` + strconv.FormatInt(us, 10) + `","SYSLOG_IDENTIFIER":["a","b"],"MESSAGE":[104,105,255]}`, `Mar  4 05:06:07 a: hi\xff`},
		// What the processor logged reaches the terminal escaped: ESC, BEL,
		// CR, C1 controls, bidirectional overrides, in the message and in
		// the identifier. The lines of a message after the first are
		// indented under it, as journalctl shows them, so that they cannot
		// pass for entries.
		{`{"__REALTIME_TIMESTAMP":"` + strconv.FormatInt(us, 10) + `","SYSLOG_IDENTIFIER":"k\u001b[8m","_PID":"7","MESSAGE":"\u001b]0;pwned\u0007\u001b[2Jok\r\u009b1m\u202e\tdone\nMar  4 05:06:08 sshd[1]: fake"}`,
			`Mar  4 05:06:07 k\x1b[8m[7]: \x1b]0;pwned\x07\x1b[2Jok\x0d\u009b1m\u202e` + "\tdone\n" + strings.Repeat(" ", len(`Mar  4 05:06:07 k\x1b[8m[7]: `)) + "Mar  4 05:06:08 sshd[1]: fake"},
		{`{"__REALTIME_TIMESTAMP":"` + strconv.FormatInt(us, 10) + `","SYSLOG_IDENTIFIER":"a","MESSAGE":null}`, "Mar  4 05:06:07 a: "},
	} {
		got, _, err := formatEntry([]byte(tc.entry))
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.entry, got, err, tc.want)
		}
	}
	for _, bad := range []string{`not json`, `{"MESSAGE":"no time"}`} {
		if _, _, err := formatEntry([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// fakeJournalctl writes a journalctl that prints script's output, and
// records its arguments in the returned file.
func fakeJournalctl(t *testing.T, script string) (SystemJournal, string) {
	t.Helper()
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	path := filepath.Join(dir, "journalctl")
	body := "#!/bin/sh\nprintf '%s\\n' \"$@\" >" + argsFile + "\n" + script + "\n"
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return SystemJournal{Command: []string{path}}, argsFile
}

func TestJournalRead(t *testing.T) {
	j, argsFile := fakeJournalctl(t, `echo '{"__REALTIME_TIMESTAMP":"1000000","SYSLOG_IDENTIFIER":"p","MESSAGE":"one"}'
echo '{"__REALTIME_TIMESTAMP":"2000000","SYSLOG_IDENTIFIER":"p","MESSAGE":"two"}'`)
	lines, err := j.Tail(context.Background(), "kato@a.service", 2)
	if err != nil || len(lines) != 2 || !strings.HasSuffix(lines[0], " p: one") || !strings.HasSuffix(lines[1], " p: two") {
		t.Fatalf("Tail: %q %v", lines, err)
	}
	args, _ := os.ReadFile(argsFile)
	if !strings.Contains(string(args), "--unit=kato@a.service\n--lines=2\n") {
		t.Errorf("journalctl got %q", args)
	}

	// No lines asked for: journalctl is not even run.
	os.Remove(argsFile)
	if lines, err := j.Tail(context.Background(), "kato@a.service", 0); err != nil || len(lines) != 0 {
		t.Errorf("Tail 0: %q %v", lines, err)
	}
	if _, err := os.Stat(argsFile); err == nil {
		t.Error("Tail 0 ran journalctl")
	}

	// A failing journalctl: its message, and the command.
	j, _ = fakeJournalctl(t, `echo 'Failed to add filter for units: No data available' >&2; exit 1`)
	_, err = j.Tail(context.Background(), "kato@a.service", 5)
	if err == nil || !strings.Contains(err.Error(), "No data available") || !strings.Contains(err.Error(), "--unit=kato@a.service") {
		t.Errorf("failing journalctl: %v", err)
	}

	// An error of the caller stops the reading and is returned.
	j, _ = fakeJournalctl(t, `while :; do echo '{"__REALTIME_TIMESTAMP":"1","MESSAGE":"x"}'; done`)
	stop := errors.New("enough")
	n := 0
	err = j.Read(context.Background(), JournalQuery{Unit: "u", Lines: -1}, func(string) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Read: %v after %d lines", err, n)
	}
}

func TestJournalFollowEndsWithTheContext(t *testing.T) {
	j, _ := fakeJournalctl(t, `echo '{"__REALTIME_TIMESTAMP":"1000000","MESSAGE":"first"}'; exec sleep 60`)
	ctx, cancel := context.WithCancel(context.Background())
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- j.Read(ctx, JournalQuery{Unit: "u", Lines: 0, Follow: true}, func(l string) error {
			got = append(got, l)
			cancel()
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil || len(got) != 1 || !strings.HasSuffix(got[0], ": first") {
			t.Fatalf("Follow: %q %v", got, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Follow did not end with its context")
	}
}

// TestJournalSinceWithLines: --since with -n shows the last lines since
// then, and -f goes on after the last of them.
func TestJournalSinceWithLines(t *testing.T) {
	j, _ := fakeJournalctl(t, `case "$*" in
*--after-cursor=c3*) echo '{"__REALTIME_TIMESTAMP":"4000000","MESSAGE":"four","__CURSOR":"c4"}'; exec sleep 60 ;;
*--lines*|*--follow*) echo "unexpected $*" >&2; exit 1 ;;
*--since=@*) for i in 1 2 3; do echo '{"__REALTIME_TIMESTAMP":"'$i'000000","MESSAGE":"'$i'","__CURSOR":"c'$i'"}'; done ;;
esac`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	q := JournalQuery{Unit: "u", Lines: 2, Since: time.Unix(1, 0)}
	collect := func(l string) error {
		got = append(got, l[strings.LastIndex(l, ": ")+2:])
		if len(got) == 3 {
			cancel()
		}
		return nil
	}
	if err := j.Read(ctx, q, collect); err != nil || !slices.Equal(got, []string{"2", "3"}) {
		t.Fatalf("since with 2 lines: %q %v", got, err)
	}
	got = nil
	q.Follow = true
	if err := j.Read(ctx, q, collect); err != nil || !slices.Equal(got, []string{"2", "3", "four"}) {
		t.Fatalf("since with 2 lines, followed: %q %v", got, err)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 1, 15, 30, 0, 0, time.Local)
	for in, want := range map[string]time.Time{
		"now":                    now,
		"today":                  time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local),
		"yesterday":              time.Date(2026, 11, 30, 0, 0, 0, 0, time.Local),
		"2026-11-02":             time.Date(2026, 11, 2, 0, 0, 0, 0, time.Local),
		"2026-11-02 08:09":       time.Date(2026, 11, 2, 8, 9, 0, 0, time.Local),
		"2026-11-02 08:09:10":    time.Date(2026, 11, 2, 8, 9, 10, 0, time.Local),
		"2026-11-02T08:09:10Z":   time.Date(2026, 11, 2, 8, 9, 10, 0, time.UTC),
		"2026-11-02T08:09:10.5Z": time.Date(2026, 11, 2, 8, 9, 10, 5e8, time.UTC),
		"10m":                    now.Add(-10 * time.Minute),
		"-2h30m":                 now.Add(-150 * time.Minute),
		"1h ago":                 now.Add(-time.Hour),
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %s %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "10 parsecs", "2026-13-01", "+-5m"} {
		_, err := ParseSince(bad, now)
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != "since" || fe.Value != bad {
			t.Errorf("ParseSince(%q): %v, want a field error for since", bad, err)
		}
	}
}

// TestNewJournalQuery: logs' lines, 0 or more, all of them with --since
// unless --lines is given too; a bad --since or negative --lines refused
// naming the flag's field.
func TestNewJournalQuery(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	ten := "10m"
	for _, tc := range []struct {
		name       string
		lines      int
		linesGiven bool
		since      *string
		want       JournalQuery
		field      string
	}{
		{"lines", 50, false, nil, JournalQuery{Lines: 50, Follow: true}, ""},
		{"since", 50, false, &ten, JournalQuery{Lines: -1, Since: now.Add(-10 * time.Minute), Follow: true}, ""},
		{"since and lines", 5, true, &ten, JournalQuery{Lines: 5, Since: now.Add(-10 * time.Minute), Follow: true}, ""},
		{"negative lines", -1, true, nil, JournalQuery{}, "lines"},
		{"since given empty", 50, false, new(string), JournalQuery{}, "since"},
	} {
		q, err := NewJournalQuery(tc.lines, tc.linesGiven, tc.since, true, now)
		var fe *config.FieldError
		switch {
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%s: error %v, want one of field %s", tc.name, err, tc.field)
		case tc.field == "" && (err != nil || !q.Since.Equal(tc.want.Since) || q.Lines != tc.want.Lines || q.Follow != tc.want.Follow):
			t.Errorf("%s: %+v, %v; want %+v", tc.name, q, err, tc.want)
		}
	}
}
