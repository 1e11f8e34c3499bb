// Package kgdb is the KG database beside the queue: its schema, the
// documents and the KG service's results written back beside them, the
// workers' reports, the copy to PostgreSQL, operator admin, and root's
// access path to it. The leased queue itself is package queue, which DB
// holds; DB opens the SQLite file, or the PostgreSQL database of a
// postgres:// URL (Open takes either), and hands the *sql.DB to it.
//
// The operations operators run (from the CLI and the web) are one table
// (ops.go) that the in-process access, the kato-queue helper's dispatch
// and the helper's client all use, and their errors keep their kind across
// the helper's connection.
//
// Adding an operation: define it in the table (name, arguments, result)
// and give Client a method calling it. The helper serves it, and every
// Store (direct or through the helper) offers it, with nothing else to
// change.
package kgdb
