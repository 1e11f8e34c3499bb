package packaging

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// ValidateVersion reports whether v can be the version of both the deb and
// the rpm package: it starts with a digit and holds only ASCII letters,
// digits, '.', '+' and '~'. A '-' is refused because dpkg reads it as the
// start of a Debian revision and rpm does not allow it in a version at all.
func ValidateVersion(v string) error {
	if v == "" {
		return fmt.Errorf("invalid version %q: must not be empty", v)
	}
	if v[0] < '0' || v[0] > '9' {
		return fmt.Errorf("invalid version %q: must start with a digit", v)
	}
	for _, r := range v {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '+' || r == '~'
		if !ok {
			return fmt.Errorf("invalid version %q: character %q not allowed: use ASCII letters, digits, '.', '+' and '~'", v, r)
		}
	}
	return nil
}

// describeAfterTag matches what `git describe --tags` prints for a commit
// after the newest tag: TAG-N-gHASH.
var describeAfterTag = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]+)$`)

// hashOnly matches what `git describe --always` prints when no tag is
// reachable: the abbreviated commit hash.
var hashOnly = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// VersionFromDescribe turns the output of `git describe --tags --always`
// into a package version that dpkg and rpm both accept and order the way the
// history goes. commits is the number of commits up to HEAD; it only counts
// when no tag is reachable.
//
//	v1.2.3             1.2.3
//	v1.2.3-4-gabc1234  1.2.3+git4.abc1234   (after 1.2.3, before 1.2.4)
//	v2.0.0-rc1         2.0.0~rc1            (before 2.0.0)
//	abc1234            0.0.0~git57.abc1234  (no tag: before any release)
func VersionFromDescribe(describe string, commits int) (string, error) {
	d := strings.TrimSpace(describe)
	var v string
	switch m := describeAfterTag.FindStringSubmatch(d); {
	case m != nil:
		v = tagVersion(m[1]) + "+git" + m[2] + "." + m[3]
	case hashOnly.MatchString(d):
		if commits < 1 {
			return "", fmt.Errorf("invalid commit count %d for untagged commit %s: must be 1 or more", commits, d)
		}
		v = "0.0.0~git" + strconv.Itoa(commits) + "." + d
	default:
		v = tagVersion(d)
	}
	if err := ValidateVersion(v); err != nil {
		return "", fmt.Errorf("git describe %q: %w; tag releases as vX.Y.Z", d, err)
	}
	return v, nil
}

// tagVersion drops the customary "v" and turns a pre-release suffix
// ("-rc1") into one that sorts before the release ("~rc1").
func tagVersion(tag string) string {
	if len(tag) > 1 && (tag[0] == 'v' || tag[0] == 'V') && tag[1] >= '0' && tag[1] <= '9' {
		tag = tag[1:]
	}
	return strings.ReplaceAll(tag, "-", "~")
}

// GitVersion returns the package version of the source tree at root, from
// `git describe --tags --always` and the commit count.
func GitVersion(ctx context.Context, root string) (string, error) {
	describe, err := git(ctx, root, "describe", "--tags", "--always")
	if err != nil {
		return "", err
	}
	count, err := git(ctx, root, "rev-list", "--count", "HEAD")
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(count)
	if err != nil {
		return "", fmt.Errorf("git rev-list --count in %s printed %q: not a number", root, count)
	}
	return VersionFromDescribe(describe, n)
}

// git runs git in dir and returns its trimmed output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
