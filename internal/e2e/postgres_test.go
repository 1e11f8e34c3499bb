package e2e

import (
	"net/netip"
	"strings"

	"github.com/kato-manager/kato-manager/internal/testbed"
)

// startPostgres runs the queue's PostgreSQL server on m (see
// testbed.StartPostgres) and returns the queue database's URL for hosts
// that reach m by name.
func (m *machine) startPostgres(addr, subnet, name string) string {
	m.t.Helper()
	url, err := testbed.StartPostgres(m.t.Context(), m.Machine, netip.MustParseAddr(addr), netip.MustParsePrefix(subnet), name)
	if err != nil {
		m.t.Fatal(err)
	}
	return url
}

// psql runs SQL against url and returns its unaligned, tuples-only output.
func (m *machine) psql(url, sql string) string {
	m.t.Helper()
	return strings.TrimSpace(m.must("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", url, "-c", sql))
}
