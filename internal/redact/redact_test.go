package redact

import "testing"

func TestURL(t *testing.T) {
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
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
