package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
)

// InMachine is a cluster running inside an sdharness machine as the
// transient unit pgtest.service, owned by the machine's postgres user, with
// its socket in SocketDir.
type InMachine struct {
	m *sdharness.Machine
	// SocketDir holds the server's unix socket, inside the machine.
	SocketDir string
	// Listen is the TCP address the server listens on too, "" for none.
	Listen string
}

// Port is the port of every cluster of this package inside a machine.
const machinePort = 5432

// StartInMachine initialises and starts a cluster inside m: data under
// /var/lib/pgtest, the socket in /run/pgtest, trust authentication. With
// listen set (an address of the machine), it also accepts TCP connections
// on it, from any address, for workers on other machines. The cluster goes
// with the machine.
func StartInMachine(ctx context.Context, m *sdharness.Machine, listen string) (*InMachine, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	c := &InMachine{m: m, SocketDir: "/run/pgtest", Listen: listen}
	data := "/var/lib/pgtest/data"
	steps := [][]string{
		{"install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0755", "/var/lib/pgtest", c.SocketDir},
		{"runuser", "-u", "postgres", "--", filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
			"--auth=trust", "--encoding=UTF8", "--no-sync"},
	}
	if listen != "" {
		steps = append(steps, []string{"sh", "-c", "echo 'host all all all trust' >> " + data + "/pg_hba.conf"})
	}
	steps = append(steps, []string{"systemd-run", "--unit=pgtest", "--uid=postgres", "--gid=postgres", "--",
		filepath.Join(bin, "postgres"), "-D", data, "-k", c.SocketDir, "-p", strconv.Itoa(machinePort),
		"-c", "listen_addresses=" + listen, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200"})
	for _, s := range steps {
		if _, _, err := m.Run(ctx, s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("PostgreSQL in the machine: %w", err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, err := m.Run(ctx, filepath.Join(bin, "pg_isready"), "-q", "-h", c.SocketDir, "-p", strconv.Itoa(machinePort))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("PostgreSQL in the machine did not get ready: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c, nil
}

// CreateDatabase creates database name and returns its URL over the
// socket, for programs inside the machine.
func (c *InMachine) CreateDatabase(ctx context.Context, name string) (string, error) {
	if _, err := c.SQL(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return c.URL(name), nil
}

// URL is the socket URL of database name, for programs inside the machine.
func (c *InMachine) URL(name string) string {
	q := url.Values{"host": {c.SocketDir}, "port": {strconv.Itoa(machinePort)}}
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/" + name, RawQuery: q.Encode()}).String()
}

// TCPURL is the URL of database name over TCP at the cluster's listen
// address, for programs on other machines.
func (c *InMachine) TCPURL(name string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s", hostPort(c.Listen, machinePort), name)
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// SQL runs statements with psql inside the machine, on database db, and
// returns what they print, unaligned without headers: one row a line,
// columns split by |.
func (c *InMachine) SQL(ctx context.Context, db, statements string) (string, error) {
	out, _, err := c.m.Run(ctx, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", c.SocketDir, "-p", strconv.Itoa(machinePort), "-U", "postgres", "-d", db, "-c", statements)
	return strings.TrimSpace(out), err
}
