// Package kgworker is the KG pool's worker: the client of the KG service
// (its request and response models, as the contract gives them), the
// worker loop that moves queued documents through it, and the result store
// that opens the KG database and writes each answer back.
//
// The leased queue itself is package queue; this package opens the SQLite
// file, or the PostgreSQL database of a postgres:// URL (Open takes
// either), hands the *sql.DB to it, and writes the entity and relationship
// rows inside the transaction that completes the item (queue.CompleteTx),
// so that a result and its completion are one commit, written only by the
// worker that still holds the lease.
//
// Faults are classified once, by ClassifyFault: nothing sent (service
// unreachable) hands the item back without an attempt; 429 and 503 hand it
// back without an attempt, not due before their Retry-After; anything after
// a request was sent (connection reset, timeout, another 5xx, an answer that
// breaks the contract) spends an attempt and backs off, and the item fails
// after max_retries; 422 fails it at once. Every queue write after a request
// runs with its own fresh deadline and is retried while the lease is
// renewed, so a successful ingest is never thrown away because the database
// was busy; after MaxDBErrors database errors in a row the worker gives up.
package kgworker
