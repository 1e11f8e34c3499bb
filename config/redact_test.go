package config

import (
	"errors"
	"strings"
	"testing"
)

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
