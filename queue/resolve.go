package queue

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jackc/pgservicefile"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kato-manager/kato-manager/internal/redact"
)

// libpqEnv maps the environment variables libpq (and pgx, which follows it)
// reads to their connection keywords. PGDATABASE is left out: a queue's URL
// always names its database.
var libpqEnv = map[string]string{
	"PGHOST":               "host",
	"PGPORT":               "port",
	"PGUSER":               "user",
	"PGPASSWORD":           "password",
	"PGPASSFILE":           "passfile",
	"PGAPPNAME":            "application_name",
	"PGCONNECT_TIMEOUT":    "connect_timeout",
	"PGSSLMODE":            "sslmode",
	"PGSSLKEY":             "sslkey",
	"PGSSLCERT":            "sslcert",
	"PGSSLCERTMODE":        "sslcertmode",
	"PGSSLSNI":             "sslsni",
	"PGSSLROOTCERT":        "sslrootcert",
	"PGSSLPASSWORD":        "sslpassword",
	"PGSSLNEGOTIATION":     "sslnegotiation",
	"PGTARGETSESSIONATTRS": "target_session_attrs",
	"PGSERVICE":            "service",
	"PGSERVICEFILE":        "servicefile",
	"PGTZ":                 "timezone",
	"PGOPTIONS":            "options",
	"PGMINPROTOCOLVERSION": "min_protocol_version",
	"PGMAXPROTOCOLVERSION": "max_protocol_version",
	"PGCHANNELBINDING":     "channel_binding",
	"PGREQUIREAUTH":        "require_auth",
}

// ResolveURL returns rawURL, a PostgreSQL URL, with the settings libpq's
// own sources give this process written into it: the PG* environment
// variables (PGPASSWORD, PGSSLMODE, …), the service named by PGSERVICE or
// service= as its service file has it (PGSERVICEFILE, ~/.pg_service.conf),
// and the password its password file (PGPASSFILE, ~/.pgpass) holds for the
// connection, for defaultUser when no user is named. What rawURL says
// itself wins, as in libpq. A process without those sources (root's helper,
// running as another user with its environment cleared) then connects as
// this one would. The result can hold a password: hand it over a pipe,
// never on a command line or in an environment.
func ResolveURL(rawURL, defaultUser string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || !IsURL(rawURL) {
		return "", fmt.Errorf("invalid database URL %s: must be a postgres:// or postgresql:// URL", redact.URL(rawURL))
	}
	q := u.Query()
	given := map[string]bool{}
	for k := range q {
		given[k] = true
	}
	if u.User != nil && u.User.Username() != "" {
		given["user"] = true
	}
	if p, ok := u.User.Password(); ok && p != "" {
		given["password"] = true
	}
	if u.Hostname() != "" {
		given["host"] = true
	}
	if u.Port() != "" {
		given["port"] = true
	}

	settings := map[string]string{}
	for env, key := range libpqEnv {
		if v := os.Getenv(env); v != "" {
			settings[key] = v
		}
	}
	if v := q.Get("servicefile"); v != "" {
		settings["servicefile"] = v
	}
	if v := q.Get("service"); v != "" {
		settings["service"] = v
	}
	if name := settings["service"]; name != "" {
		file := settings["servicefile"]
		if file == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("service %q: no service file: %w", name, err)
			}
			file = filepath.Join(home, ".pg_service.conf")
		}
		sf, err := pgservicefile.ReadServicefile(file)
		if err != nil {
			return "", fmt.Errorf("service %q: read service file: %w", name, err)
		}
		svc, err := sf.GetService(name)
		if err != nil {
			return "", fmt.Errorf("service %q in %s: %w", name, file, err)
		}
		// The service's settings come after the environment's, before the
		// URL's.
		for k, v := range svc.Settings {
			if k == "dbname" {
				continue
			}
			settings[k] = v
		}
	}
	q.Del("service")
	q.Del("servicefile")
	delete(settings, "service")
	delete(settings, "servicefile")
	passfile := settings["passfile"]
	delete(settings, "passfile")
	q.Del("passfile")
	for k, v := range settings {
		if !given[k] {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	if given["password"] || q.Get("password") != "" {
		return u.String(), nil
	}

	// The password file, read as pgx reads it, for the connection the URL
	// now describes.
	probe := *u
	pq := probe.Query()
	if !given["user"] && pq.Get("user") == "" && defaultUser != "" {
		pq.Set("user", defaultUser)
	}
	if passfile != "" {
		pq.Set("passfile", passfile)
	}
	probe.RawQuery = pq.Encode()
	cfg, err := pgconn.ParseConfig(probe.String())
	if err != nil {
		return "", fmt.Errorf("invalid database URL %s: %s", redact.URL(rawURL), parseErrorReason(err))
	}
	if cfg.Password != "" {
		q.Set("password", cfg.Password)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}
