// Package kgworker owns the knowledge-graph processing queue, the client of
// the KG service and the worker loop that moves queued content through it.
//
// The queue lives in a SQLite file shared by every worker process. Items are
// claimed under a lease inside one write transaction, so two workers never
// hold the same item; a worker that dies loses its leases when they expire
// and any other worker puts those items back in the queue. Results are
// written back in the same transaction that marks an item completed, and
// only by the worker that still holds its lease.
//
// A worker spends an attempt only when the service rejects an item. While the
// service is unreachable it claims nothing, and items it already holds go back
// to the queue unchanged.
package kgworker
