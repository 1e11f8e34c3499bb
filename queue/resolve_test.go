package queue_test

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/kato-manager/kato-manager/queue"
)

// TestResolveURL: the URL a child receives holds what libpq's sources give
// this process, in libpq's order (environment, then service, then the URL
// itself), and names no file the child would have to read.
func TestResolveURL(t *testing.T) {
	dir := t.TempDir()
	serviceFile := filepath.Join(dir, "pg_service.conf")
	if err := os.WriteFile(serviceFile, []byte("[kg]\nhost=db.service\nport=6000\nuser=svc\nsslmode=require\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(passFile, []byte("db.example:5432:kg:kato:from-file\n*:*:*:other:other-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		url  string
		want map[string]string // query values of the result; "" for absent
	}{
		{"nothing to add", nil, "postgres:///kg?host=/run/postgresql",
			map[string]string{"host": "/run/postgresql", "password": "", "user": ""}},
		{"PGPASSWORD", map[string]string{"PGPASSWORD": "s3cret"}, "postgres://kato@db.example/kg",
			map[string]string{"password": "s3cret"}},
		{"the URL's password wins", map[string]string{"PGPASSWORD": "s3cret"}, "postgres://kato:inurl@db.example/kg",
			map[string]string{"password": ""}},
		{"the URL's host wins over PGHOST", map[string]string{"PGHOST": "elsewhere", "PGSSLMODE": "verify-full"}, "postgres://kato@db.example/kg",
			map[string]string{"host": "", "sslmode": "verify-full"}},
		{"password file", map[string]string{"PGPASSFILE": passFile}, "postgres://kato@db.example/kg",
			map[string]string{"password": "from-file", "passfile": ""}},
		{"password file for the default user", map[string]string{"PGPASSFILE": passFile}, "postgres://db.example/kg",
			map[string]string{"password": "other-file", "user": ""}},
		{"service from the environment", map[string]string{"PGSERVICEFILE": serviceFile, "PGSERVICE": "kg", "PGHOST": "env-host"}, "postgres:///kg",
			map[string]string{"host": "db.service", "port": "6000", "user": "svc", "sslmode": "require", "service": "", "servicefile": ""}},
		{"service in the URL, the URL's port wins", map[string]string{"PGSERVICEFILE": serviceFile}, "postgres:///kg?service=kg&port=7000",
			map[string]string{"host": "db.service", "port": "7000", "service": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE"} {
				t.Setenv(k, tc.env[k])
			}
			t.Setenv("HOME", dir) // no ~/.pgpass or ~/.pg_service.conf of the machine's
			got, err := queue.ResolveURL(tc.url, "other")
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if v := u.Query().Get(k); v != want {
					t.Errorf("%s: %s = %q, want %q", got, k, v, want)
				}
			}
		})
	}

	t.Run("unknown service", func(t *testing.T) {
		t.Setenv("PGSERVICEFILE", serviceFile)
		t.Setenv("PGSERVICE", "nope")
		if _, err := queue.ResolveURL("postgres:///kg", "kato"); err == nil {
			t.Fatal("an unknown service was accepted")
		}
	})
}
