package testbed

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/kato-manager/kato-manager/internal/testkit/pgtest"
	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
)

// The queue's role and database in SharedQueue's cluster, and the role's
// password.
const (
	QueueRole     = "kg"
	QueueDatabase = "kg"
	QueueSecret   = "kg-test-secret"
)

// SharedQueue runs PostgreSQL on m (pgtest.StartInMachine), listening on
// addr, m's address on a Network with subnet, and makes the queue's role and
// database. The subnet logs in only with the role's password
// (scram-sha-256), as workers on other hosts do through kg.db_url; the
// machine's own socket stays trusted for the test's SQL. It returns the
// queue database's URL for hosts that reach m by the name host.
func SharedQueue(ctx context.Context, m *sdharness.Machine, addr netip.Addr, subnet netip.Prefix, host string) (string, error) {
	c, err := pgtest.StartInMachine(ctx, m, addr.String())
	if err != nil {
		return "", err
	}
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", QueueRole, QueueSecret),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", QueueDatabase, QueueRole),
	} {
		if _, err := c.SQL(ctx, "postgres", sql); err != nil {
			return "", fmt.Errorf("prepare the shared queue database: %w", err)
		}
	}
	hba, err := c.SQL(ctx, "postgres", "SHOW hba_file")
	if err != nil {
		return "", err
	}
	// The first matching line of pg_hba.conf decides.
	rule := fmt.Sprintf("1i host all all %s scram-sha-256", subnet)
	if _, _, err := m.Run(ctx, "sed", "-i", rule, hba); err != nil {
		return "", fmt.Errorf("require a password from %s: %w", subnet, err)
	}
	if _, err := c.SQL(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://%s:%s@%s:5432/%s", QueueRole, QueueSecret, host, QueueDatabase), nil
}
