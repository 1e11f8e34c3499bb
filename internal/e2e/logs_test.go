package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// logLine writes a journal entry about unit as a root daemon does
// (OBJECT_SYSTEMD_UNIT, which `journalctl -u` shows), so the test decides
// what the unit's journal holds and when.
func (m *machine) logLine(unit, message string) {
	m.t.Helper()
	cmd := m.Command(context.Background(), "logger", "--journald")
	cmd.Stdin = strings.NewReader(fmt.Sprintf("MESSAGE=%s\nSYSLOG_IDENTIFIER=e2e-logs\nOBJECT_SYSTEMD_UNIT=%s\n", message, unit))
	if out, err := cmd.CombinedOutput(); err != nil {
		m.t.Fatalf("logger: %v\n%s", err, out)
	}
}

// TestLogs reads an instance's journal with kato-manager logs -n, --since
// and -f on a real systemd and journald, through journalctl's JSON output.
func TestLogs(t *testing.T) {
	m := bootMachine(t)
	const unit = "kato@logs-1.service"
	m.mustKM("start", "--id", "logs-1", "--name", "Logger")
	defer m.mustKM("stop", "--all", "--no-mongo")
	for i := 1; i <= 5; i++ {
		m.logLine(unit, fmt.Sprintf("line %d", i))
	}
	m.waitFor("the five lines in the journal", 10*time.Second, func() bool {
		return strings.Contains(m.exec("journalctl", "-u", unit, "-o", "cat").stdout, "line 5")
	})

	t.Run("-n", func(t *testing.T) {
		m.t = t
		// By name and by ID; exactly the last lines, oldest first, in
		// journalctl's short format.
		for _, ref := range []string{"logs-1", "Logger"} {
			out := m.mustKM("logs", ref, "-n", "3")
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 3 {
				t.Fatalf("logs %s -n 3 printed %d lines:\n%s", ref, len(lines), out)
			}
			for i, l := range lines {
				if !strings.Contains(l, " e2e-logs[") || !strings.HasSuffix(l, fmt.Sprintf(": line %d", i+3)) {
					t.Errorf("line %d of logs -n 3: %q", i+1, l)
				}
				if _, err := time.Parse(time.Stamp, l[:len(time.Stamp)]); err != nil {
					t.Errorf("line %q does not start with a time stamp: %v", l, err)
				}
			}
		}
		if out := m.mustKM("logs", "logs-1", "-n", "0"); out != "" {
			t.Errorf("logs -n 0 printed %q", out)
		}
		// The default is the last 50 lines: the processor's own and
		// systemd's about the unit as well.
		out := m.mustKM("logs", "logs-1")
		if !strings.Contains(out, "Started") || !strings.HasSuffix(out, ": line 5\n") {
			t.Errorf("logs logs-1:\n%s", out)
		}
	})

	t.Run("--since", func(t *testing.T) {
		m.t = t
		time.Sleep(1100 * time.Millisecond)
		since := time.Now()
		time.Sleep(100 * time.Millisecond)
		m.logLine(unit, "after the mark")
		m.waitFor("the new line in the journal", 10*time.Second, func() bool {
			return strings.Contains(m.exec("journalctl", "-u", unit, "-o", "cat").stdout, "after the mark")
		})
		out := m.mustKM("logs", "logs-1", "--since", since.Format(time.RFC3339Nano))
		if !strings.HasSuffix(out, ": after the mark\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("logs --since the mark:\n%s", out)
		}
		// --since without -n shows all lines since then, not the last 50.
		out = m.mustKM("logs", "logs-1", "--since", "1h")
		for i := 1; i <= 5; i++ {
			if !strings.Contains(out, fmt.Sprintf(": line %d\n", i)) {
				t.Errorf("logs --since 1h lacks line %d:\n%s", i, out)
			}
		}
		// With -n too, the last lines since then, as without --since.
		out = m.mustKM("logs", "logs-1", "--since", "1h", "-n", "2")
		if l := strings.Split(out, "\n"); len(l) != 3 || !strings.HasSuffix(l[0], ": line 5") || !strings.HasSuffix(l[1], ": after the mark") {
			t.Errorf("logs --since 1h -n 2:\n%s", out)
		}
		if r := m.km("logs", "logs-1", "--since", "soon"); r.code != 2 || !strings.Contains(r.stderr, "invalid --since soon: must be a date") || r.stdout != "" {
			t.Errorf("logs --since soon: %s", r)
		}
	})

	t.Run("-f", func(t *testing.T) {
		m.t = t
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := m.Command(ctx, katoManager, "logs", "logs-1", "-f", "-n", "1")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cancel()
			cmd.Wait()
		}()
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		next := func() string {
			t.Helper()
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("logs -f ended")
				}
				return l
			case <-time.After(15 * time.Second):
				t.Fatal("logs -f printed nothing within 15s")
			}
			return ""
		}
		if l := next(); !strings.HasSuffix(l, ": after the mark") {
			t.Fatalf("logs -f -n 1 began with %q", l)
		}
		for i := 1; i <= 3; i++ {
			m.logLine(unit, fmt.Sprintf("followed %d", i))
			if l := next(); !strings.HasSuffix(l, fmt.Sprintf(": followed %d", i)) {
				t.Fatalf("logs -f printed %q, want followed %d", l, i)
			}
		}
	})

	t.Run("control characters", func(t *testing.T) {
		m.t = t
		// What a processor logs reaches root's terminal escaped: journald
		// keeps such a message as bytes, which journalctl itself shows as
		// "[N blob data]".
		m.logLine(unit, "\x1b]0;owned\x07\x1b[2Jcleared\u009b1m\u202etxt.exe")
		m.waitFor("the line in the journal", 10*time.Second, func() bool {
			return strings.Contains(m.exec("journalctl", "-u", unit, "-o", "json").stdout, "MESSAGE")
		})
		var out string
		m.waitFor("logs to show the line", 10*time.Second, func() bool {
			out = m.mustKM("logs", "logs-1", "-n", "1")
			return strings.Contains(out, "cleared")
		})
		if want := `: \x1b]0;owned\x07\x1b[2Jcleared\u009b1m\u202etxt.exe` + "\n"; !strings.HasSuffix(out, want) {
			t.Errorf("logs -n 1 = %q, want it to end %q", out, want)
		}
		for _, raw := range []string{"\x1b", "\x07", "\u009b", "\u202e"} {
			if strings.Contains(out, raw) {
				t.Errorf("logs printed %q raw: %q", raw, out)
			}
		}
	})
}
