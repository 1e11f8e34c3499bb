// Package fleet owns fleet files: their formats, their checks with the
// line of every problem, their resolution against kato.toml, the plan of
// applying one to the registry, the export of the registry as one, and
// handing one to the other hosts it names.
//
// A fleet file's entries are read by config.ReadEntry, whose rules
// kato.toml's [templates.NAME] follow too; this package checks what spans
// entries.
package fleet
