package kgworker

// Reclaims is how many times w's loop has looked for expired leases. Read
// it only once Run has returned.
func Reclaims(w *Worker) int { return w.reclaims }
