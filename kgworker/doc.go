// Package kgworker is the KG pool's worker: the client of the KG service
// and the worker loop that moves queued documents through it, writing each
// answer back through the KG database of package kgdb.
//
// The service's request and answer models are kgdb's (the database stores
// them as they are); this package checks an answer against its request.
// kgdb writes the entity and relationship rows inside the transaction that
// completes the item (queue.CompleteTx), so that a result and its
// completion are one commit, written only by the worker that still holds
// the lease.
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
