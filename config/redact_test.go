package config

import (
	"errors"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mongodb://localhost:27017", "mongodb://localhost:27017"},
		{"mongodb://admin:s3cret@db:27017/kato?authSource=admin", "mongodb://REDACTED@db:27017/kato?authSource=admin"},
		{"https://token@kg.example/api", "https://REDACTED@kg.example/api"},
		{"http://user:p%40ss@kg:8088", "http://REDACTED@kg:8088"},
		// Does not parse (a second host list, a bad escape): still redacted.
		{"mongodb://u:pw@a:1,b:2/x", "mongodb://REDACTED@a:1,b:2/x"},
		{"http://u:p%zz@h", "http://REDACTED@h"},
		{"not a url", "not a url"},
		{"", ""},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestInvalidURLErrorsHideCredentials(t *testing.T) {
	for _, tc := range []struct{ name, toml, env string }{
		{"mongo in file", "[services]\nmongo_url = \"mysql://root:hunter2@db\"\n", ""},
		{"kg in file", "[kg]\nservice_url = \"ftp://root:hunter2@kg\"\n", ""},
		{"kg in env", "", "ftp://root:hunter2@kg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "kato.toml", tc.toml)
			c, err := Load(path)
			if err == nil && tc.env != "" {
				err = c.ApplyEnv(func(k string) string {
					if k == "KG_SERVICE_URL" {
						return tc.env
					}
					return ""
				})
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FieldError", err)
			}
			if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "REDACTED@") {
				t.Errorf("error shows the credentials: %v", err)
			}
		})
	}
}
