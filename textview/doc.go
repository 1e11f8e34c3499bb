// Package textview renders what kato-manager prints as text: the tables
// and reports of the supervisor's views (list, status, the fronts, the
// merged list and status of several hosts), a fleet file's plan and an
// apply's outcome, the KG pool's health and statistics, the queue's items
// and a copy to PostgreSQL, and the lines that show a wait or a batch as
// it goes. JSON needs none of it: the views are encoded as they are.
//
// Every rendering writes to an io.Writer and decides nothing: what to
// show comes from the view, and whether to paint it from the Palette the
// caller chose for the output (a terminal, NO_COLOR, --no-color).
package textview
