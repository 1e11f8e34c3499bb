package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runSections are the sections, file#heading, whose sh blocks a test runs,
// each block as written, in a real systemd machine (readmeScripts), and the
// test that runs them. Every other sh block of the README and docs/ says
// why it is not run, in a <!-- not run: REASON --> line just before it.
var runSections = map[string]string{
	"README.md#Quick start":                 "TestReadmeQuickStart",
	"README.md#Coming from kato-manager.sh": "TestReadmeQuickStart",
	"README.md#Without root: `--user`":      "TestUserMode/README",
}

// docFence is a fence that opens a block without naming its language,
// which hides shell commands from TestEveryDocBlockIsRunOrMarked.
type docFence struct {
	file string
	line int
}

// docBlock is one shell block of the README or a page of docs/.
type docBlock struct {
	file    string // relative to the repository's root
	line    int    // of the opening fence
	section string // the nearest heading of level 1 or 2 above it
	notRun  string // the reason of its not-run mark, if it has one
}

// shellFence opens a block of shell commands.
var shellFence = regexp.MustCompile("^```(sh|bash|shell|console)\\s*$")

// notRunMark is the line before a block that no test runs.
var notRunMark = regexp.MustCompile(`^<!-- not run: (\S.*\S) -->$`)

// docBlocks returns the shell blocks of README.md and docs/*.md, and the
// fences that open a block without naming its language.
func docBlocks(t *testing.T) ([]docBlock, []docFence) {
	t.Helper()
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []docBlock
	var bare []docFence
	for _, path := range append([]string{"../../README.md"}, pages...) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		file := strings.TrimPrefix(path, "../../")
		section, prev, fenced := "", "", false
		for i, line := range strings.Split(string(data), "\n") {
			switch {
			case fenced:
				fenced = !strings.HasPrefix(line, "```")
			case strings.HasPrefix(line, "```"):
				fenced = true
				if strings.TrimSpace(line) == "```" {
					bare = append(bare, docFence{file, i + 1})
				}
				if shellFence.MatchString(line) {
					b := docBlock{file: file, line: i + 1, section: section}
					if m := notRunMark.FindStringSubmatch(prev); m != nil {
						b.notRun = m[1]
					}
					blocks = append(blocks, b)
				}
			case strings.HasPrefix(line, "# "), strings.HasPrefix(line, "## "):
				section = strings.TrimLeft(line, "# ")
			}
			if strings.TrimSpace(line) != "" {
				prev = strings.TrimSpace(line)
			}
		}
	}
	return blocks, bare
}

// TestEveryDocBlockIsRunOrMarked: every shell block of the README and docs/
// is in a section a test runs, or says why it is not run, and every block
// names its language, so none hides from the check. It boots nothing.
func TestEveryDocBlockIsRunOrMarked(t *testing.T) {
	blocks, bare := docBlocks(t)
	for _, f := range bare {
		t.Errorf("%s:%d: a fenced block without a language: name it (sh, toml, yaml, text, ...)", f.file, f.line)
	}
	if len(blocks) == 0 {
		t.Fatal("no shell blocks found in README.md and docs/")
	}
	used := map[string]bool{}
	for _, b := range blocks {
		key := b.file + "#" + b.section
		test, run := runSections[key]
		switch {
		case run && b.notRun != "":
			t.Errorf("%s:%d: marked not run, but %s runs the blocks of %q", b.file, b.line, test, b.section)
		case run:
			used[key] = true
		case b.notRun == "":
			t.Errorf("%s:%d: a shell block in %q that no test runs and no <!-- not run: REASON --> line explains", b.file, b.line, b.section)
		}
	}
	for key, test := range runSections {
		if !used[key] {
			t.Errorf("%s runs the blocks of %s, which has none", test, key)
		}
	}
}
