// Package kgpool is the KG pool's view across hosts: each host's unit
// health (supervisor.Pool.Health) and the workers' reports in the shared
// KG database (kgdb.Report) become the health and the statistics that
// `workers health`, `workers stats`, serve's /health, /stats and /metrics
// and the dashboard show; and the KG service's health as the workers see
// it (CheckService).
//
// Other hosts' workers are known by their reports only: a worker whose
// report is older than ReportStaleAfter no longer counts as running.
package kgpool
