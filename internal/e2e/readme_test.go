package e2e

import (
	"os"
	"strings"
	"testing"
)

// quickStartScripts returns the sh code blocks of the README's Quick start
// section, in order.
func quickStartScripts(t *testing.T) []string {
	t.Helper()
	return readmeScripts(t, "Quick start")
}

// readmeScripts returns the sh code blocks of the README's section with the
// given heading, in order.
func readmeScripts(t *testing.T, heading string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("README has no %s section", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var scripts []string
	for {
		_, rest, ok := strings.Cut(section, "```sh\n")
		if !ok {
			break
		}
		block, after, _ := strings.Cut(rest, "```\n")
		scripts = append(scripts, block)
		section = after
	}
	return scripts
}

// TestReadmeQuickStart runs the README's Quick start as written, on a fresh
// machine with the stand-in processor it describes, and checks what it
// promises.
func TestReadmeQuickStart(t *testing.T) {
	m := bootMachine(t)
	scripts := quickStartScripts(t)
	if len(scripts) < 4 {
		t.Fatalf("found %d sh blocks in the Quick start, want at least 4", len(scripts))
	}
	// A fresh machine: no kato.toml but the one the README writes.
	m.must("rm", "-f", "/etc/kato/kato.toml")
	for i, script := range scripts {
		script = strings.ReplaceAll(script, "sudo ", "")
		r := m.exec("/bin/sh", "-ec", script)
		if r.code != 0 {
			t.Fatalf("Quick start block %d failed:\n%s\n%s", i+1, script, r)
		}
		if i == 1 { // after the three starts
			for port, id := range map[string]string{"8001": "processor-1", "8002": "processor-2", "8003": "processor-3"} {
				if s := m.activeState("kato@" + id + ".service"); s != "active" {
					t.Fatalf("%s is %s", id, s)
				}
				if _, err := m.get("http://127.0.0.1:" + port + "/"); err != nil {
					t.Fatalf("stand-in processor of %s: %v", id, err)
				}
			}
		}
	}
	// The last block stops everything.
	if rows := m.listJSON(); len(rows) != 0 {
		t.Fatalf("instances left after the README's stops: %v", rows)
	}
	for _, id := range []string{"processor-1", "processor-2", "processor-3"} {
		if s := m.activeState("kato@" + id + ".service"); s != "inactive" {
			t.Errorf("%s is %s", id, s)
		}
	}

	// Then, on the same machine and with the Quick start's kato.toml, the
	// guide's habits of "Coming from kato-manager.sh", as written.
	scripts = readmeScripts(t, "Coming from kato-manager.sh")
	if len(scripts) != 1 {
		t.Fatalf("found %d sh blocks in Coming from kato-manager.sh, want 1", len(scripts))
	}
	r := m.exec("/bin/sh", "-ec", "cd /root && "+strings.ReplaceAll(scripts[0], "sudo ", ""))
	if r.code != 0 {
		t.Fatalf("Coming from kato-manager.sh failed:\n%s\n%s", scripts[0], r)
	}
	for _, want := range []string{"kato@sentiment-analyzer.service", "kato@pattern-matcher.service", "stopped and removed sentiment-analyzer", "stopped and removed pattern-matcher"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("Coming from kato-manager.sh did not print %q:\n%s", want, r)
		}
	}
	if rows := m.listJSON(); len(rows) != 0 {
		t.Fatalf("instances left after Coming from kato-manager.sh: %v", rows)
	}
}
