package units

import (
	"bytes"
	"io"

	"github.com/coreos/go-systemd/v22/unit"
)

// render lays out a generated unit file or drop-in: the comment lines of
// header, a blank line, then the sections as go-systemd's unit package
// serialises them. The serialiser writes values as given, so each must
// already be escaped for where it lands (escapeSpecifiers, execLine) and
// hold no newline (checkText).
func render(header []string, sections ...*unit.UnitSection) []byte {
	var b bytes.Buffer
	for _, line := range header {
		b.WriteString("# " + line + "\n")
	}
	b.WriteString("\n")
	io.Copy(&b, unit.SerializeSections(sections)) // a bytes.Buffer reader cannot fail
	return b.Bytes()
}

// section is a unit file section of the entries.
func section(name string, entries ...*unit.UnitEntry) *unit.UnitSection {
	return &unit.UnitSection{Section: name, Entries: entries}
}

// entry is one Name=Value line.
func entry(name, value string) *unit.UnitEntry {
	return &unit.UnitEntry{Name: name, Value: value}
}
