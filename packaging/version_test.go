package packaging

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

func TestVersionFromDescribe(t *testing.T) {
	for _, tc := range []struct {
		name, describe string
		commits        int
		want           string
	}{
		{"release tag", "v1.2.3", 40, "1.2.3"},
		{"tag without v", "1.2.3", 40, "1.2.3"},
		{"commits after a tag", "v1.2.3-4-gabc1234", 44, "1.2.3+git4.abc1234"},
		{"pre-release tag", "v2.0.0-rc1", 50, "2.0.0~rc1"},
		{"commits after a pre-release tag", "v2.0.0-rc1-3-g0123abc", 53, "2.0.0~rc1+git3.0123abc"},
		{"no tag", "df00f73", 9, "0.0.0~git9.df00f73"},
		{"trailing newline", "v1.0.0\n", 1, "1.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VersionFromDescribe(tc.describe, tc.commits)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("VersionFromDescribe(%q, %d) = %q, want %q", tc.describe, tc.commits, got, tc.want)
			}
		})
	}
}

func TestVersionFromDescribeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, describe string
		commits        int
		want           string
	}{
		{"tag without a number", "release-one", 3, `git describe "release-one": invalid version "release~one": must start with a digit`},
		{"tag with a slash", "v1.0/2", 3, `character '/' not allowed`},
		{"no commits", "df00f73", 0, `invalid commit count 0 for untagged commit df00f73: must be 1 or more`},
		{"empty", "", 3, `invalid version "": must not be empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VersionFromDescribe(tc.describe, tc.commits)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VersionFromDescribe(%q) = %q, %v; want an error containing %q", tc.describe, got, err, tc.want)
			}
		})
	}
}

func TestValidateVersion(t *testing.T) {
	for _, tc := range []struct {
		version, want string
	}{
		{"1.0.0", ""},
		{"0.0.0~git12.abc1234", ""},
		{"1.2.3+git4.abc1234", ""},
		{"", `invalid version "": must not be empty`},
		{"v1.0.0", `invalid version "v1.0.0": must start with a digit`},
		{"1.0-1", `invalid version "1.0-1": character '-' not allowed: use ASCII letters, digits, '.', '+' and '~'`},
		{"1.0 beta", `invalid version "1.0 beta": character ' ' not allowed`},
		{"1.0:2", `character ':' not allowed`},
	} {
		t.Run(tc.version, func(t *testing.T) {
			err := ValidateVersion(tc.version)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("ValidateVersion(%q) = %v", tc.version, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("ValidateVersion(%q) = %v, want an error containing %q", tc.version, err, tc.want)
			}
		})
	}
}

// TestVersionOrder checks that dpkg and rpm order the versions
// VersionFromDescribe makes as the history goes.
func TestVersionOrder(t *testing.T) {
	history := [][2]any{
		{"abc1234", 5},
		{"abd1234", 6},
		{"v0.1.0-rc1", 7},
		{"v0.1.0-rc1-2-gaaa0001", 9},
		{"v0.1.0", 10},
		{"v0.1.0-3-gbbb0001", 13},
		{"v0.1.1", 14},
		{"v0.10.0", 20},
	}
	var versions []string
	for _, h := range history {
		v, err := VersionFromDescribe(h[0].(string), h[1].(int))
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	t.Run("dpkg", func(t *testing.T) {
		needTool(t, "dpkg")
		for i := 1; i < len(versions); i++ {
			if err := exec.Command("dpkg", "--compare-versions", versions[i-1], "lt", versions[i]).Run(); err != nil {
				t.Errorf("dpkg does not order %s before %s", versions[i-1], versions[i])
			}
		}
	})
	t.Run("rpm", func(t *testing.T) {
		needTool(t, "rpm")
		for i := 1; i < len(versions); i++ {
			out, err := exec.Command("rpm", "--eval", `%{lua: print(rpm.vercmp("`+versions[i-1]+`", "`+versions[i]+`"))}`).Output()
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(out)) != "-1" {
				t.Errorf("rpm does not order %s before %s: vercmp %s", versions[i-1], versions[i], out)
			}
		}
	})
}

func TestGitVersion(t *testing.T) {
	needTool(t, "git")
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("init", "-q")
	run("commit", "-q", "--allow-empty", "-m", "one")
	run("commit", "-q", "--allow-empty", "-m", "two")
	ctx := context.Background()
	v, err := GitVersion(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "0.0.0~git2.") {
		t.Errorf("untagged tree with two commits: version %q, want 0.0.0~git2.HASH", v)
	}
	run("tag", "v1.4.0")
	if v, err = GitVersion(ctx, dir); err != nil || v != "1.4.0" {
		t.Errorf("tagged tree: version %q, %v; want 1.4.0", v, err)
	}
	run("commit", "-q", "--allow-empty", "-m", "three")
	if v, err = GitVersion(ctx, dir); err != nil || !strings.HasPrefix(v, "1.4.0+git1.") {
		t.Errorf("one commit after the tag: version %q, %v; want 1.4.0+git1.HASH", v, err)
	}
	if _, err := GitVersion(ctx, t.TempDir()); err == nil || !strings.Contains(err.Error(), "git describe --tags --always in") {
		t.Errorf("not a git tree: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"2.34", "2.4", 1},
		{"2.4", "2.34", -1},
		{"2.34", "2.34", 0},
		{"2.3.4", "2.3", 1},
		{"", "2.2.5", -1},
		{"2.2.5", "", 1},
		{"", "", 0},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
