package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/internal/sdharness"
)

// Debian's PostgreSQL 15, which machines see through their overlay of the
// host's root, run as a server of the test's own.
const (
	postgresBin    = "/usr/lib/postgresql/15/bin"
	postgresData   = "/var/lib/kato-test-postgres"
	PostgresSocket = "/run/kato-test-postgres"
	PostgresUnit   = "kato-test-postgres.service"
	PostgresPort   = 5432
)

// The queue's role and database in StartPostgres's server.
const (
	QueueRole     = "kg"
	QueueDatabase = "kg"
	QueueSecret   = "kg-test-secret"
)

// StartPostgres runs a PostgreSQL server on m as the postgres user,
// listening on loopback and on addr, m's address on a Network with subnet.
// The subnet may log in to the queue's database as its role with a password
// (scram-sha-256), as workers on other hosts do; besides that only postgres
// may, on the local socket. It makes the role and the database and returns
// their URL for hosts that reach m by the name host.
func StartPostgres(ctx context.Context, m *sdharness.Machine, addr netip.Addr, subnet netip.Prefix, host string) (string, error) {
	pwfile := "/tmp/kato-test-postgres-password"
	if err := m.WriteFile(pwfile, []byte("postgres-test-secret\n"), 0o644); err != nil {
		return "", err
	}
	hba := fmt.Sprintf("host %s %s %s scram-sha-256\n", QueueDatabase, QueueRole, subnet)
	port := fmt.Sprint(PostgresPort)
	steps := [][]string{
		{"install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", postgresData},
		{"runuser", "-u", "postgres", "--", postgresBin + "/initdb", "-D", postgresData, "-U", "postgres", "--pwfile=" + pwfile,
			"--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"},
		{"sh", "-c", `printf '%s' "$1" >>"$2"`, "sh", hba, postgresData + "/pg_hba.conf"},
		{"systemd-run", "--unit=" + PostgresUnit, "-p", "User=postgres", "-p", "RuntimeDirectory=" + strings.TrimPrefix(PostgresSocket, "/run/"),
			postgresBin + "/postgres", "-D", postgresData, "-p", port,
			"-c", "listen_addresses=127.0.0.1," + addr.String(), "-c", "unix_socket_directories=" + PostgresSocket, "-c", "max_connections=200"},
	}
	for _, step := range steps {
		if _, _, err := m.Run(ctx, step[0], step[1:]...); err != nil {
			return "", fmt.Errorf("start PostgreSQL: %w", err)
		}
	}
	err := sdharness.WaitFor(ctx, 30*time.Second, "PostgreSQL to accept connections", func() (bool, error) {
		_, _, err := m.Run(ctx, postgresBin+"/pg_isready", "-h", PostgresSocket, "-p", port)
		return err == nil, nil
	})
	if err != nil {
		return "", err
	}
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", QueueRole, QueueSecret),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", QueueDatabase, QueueRole),
	} {
		if _, _, err := m.Run(ctx, "runuser", "-u", "postgres", "--", "psql", "-h", PostgresSocket, "-p", port,
			"-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql); err != nil {
			return "", fmt.Errorf("prepare the queue database: %w", err)
		}
	}
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s", QueueRole, QueueSecret, host, PostgresPort, QueueDatabase), nil
}
