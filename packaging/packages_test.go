package packaging

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/units"
)

// testVersion is the version the packages under test are built with.
const testVersion = "1.2.3~rc1+git4.abc1234"

// acceptedLintian are the lintian warnings the deb is allowed, each with why
// it stays. Any other warning, and every error, fails TestPackages.
var acceptedLintian = map[string]string{
	"maintainer-script-calls-systemctl": "the scripts serve the rpm too: they use deb-systemd-helper and " +
		"deb-systemd-invoke where Debian has them, systemctl elsewhere, and lintian flags the systemctl branch",
	"systemd-service-file-refers-to-unusual-wantedby-target": "instances and workers are wanted by kato.target and " +
		"kg-workers.target on purpose: the targets group them, and multi-user.target wants the targets",
	"non-standard-file-perm": "/etc/kato/kato.toml is 0640 on purpose: it holds the MongoDB URL, and the " +
		"postinstall script gives it to the kato group, whose workers read it",
}

// acceptedRpmlint are the rpmlint warnings the rpm is allowed, each with why
// it stays. Any other warning, and every error, fails TestPackages.
var acceptedRpmlint = map[string]string{
	"only-non-binary-in-usr-lib": "/usr/lib holds the unit files and the sysusers.d and tmpfiles.d entries, " +
		"which systemd reads from there and nowhere under /usr/share",
	"no-manual-page-for-binary": "a mistake of rpmlint 2.4, which looks the binary up among the man pages' " +
		"section numbers; /usr/share/man/man1/kato-manager.1.gz is in the package",
	"dangerous-command-in-%postun": "the rm in postremove is the deb's purge, a branch an rpm erase never takes",
	"dangerous-command-in-%post": "the chgrp and chmod in postinstall make /etc/kato/kato.toml 0640 root:kato, " +
		"only while it is root:root as unpacked, once the kato group exists",
}

// testTime is the time the packages under test are built at.
var testTime = time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)

// built are the packages TestPackages checks, and a kato-manager built as
// theirs, whose command tree their man pages and completions must match.
type built struct {
	deb, rpm string
	docs     map[string][]byte // by path in the packages
}

func buildPackages(t *testing.T) built {
	t.Helper()
	if testing.Short() {
		t.Skip("compiles the binaries and builds both packages; not in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := t.TempDir()
	pkgs, err := Build(ctx, Options{Root: "..", OutDir: out, Version: testVersion, Time: testTime})
	if err != nil {
		t.Fatal(err)
	}
	var b built
	for _, p := range pkgs {
		if p.Version != testVersion || filepath.Dir(p.Path) != out {
			t.Errorf("package %+v: want version %s in %s", p, testVersion, out)
		}
		switch p.Format {
		case "deb":
			b.deb = p.Path
		case "rpm":
			b.rpm = p.Path
		}
	}
	if filepath.Base(b.deb) != "kato-manager_"+testVersion+"_amd64.deb" && filepath.Base(b.deb) != "kato-manager_"+testVersion+"_arm64.deb" {
		t.Errorf("deb file name %s", b.deb)
	}
	if !strings.HasPrefix(filepath.Base(b.rpm), "kato-manager-"+testVersion+"-1.") {
		t.Errorf("rpm file name %s", b.rpm)
	}
	b.docs = treeDocs(t, buildKatoManager(t, testVersion))
	return b
}

// treeDocs are the man pages and completions a kato-manager writes from its
// command tree, by where the packages install them (the zsh one under "zsh").
func treeDocs(t *testing.T, bin string) map[string][]byte {
	t.Helper()
	env := append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(testTime.Unix(), 10))
	dir := t.TempDir()
	cmd := exec.Command(bin, "__man", dir)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kato-manager __man: %v\n%s", err, out)
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
	if err != nil || len(pages) < 20 {
		t.Fatalf("kato-manager __man wrote %d pages: %v", len(pages), err)
	}
	docs := map[string][]byte{}
	for _, p := range pages {
		docs["/usr/share/man/man1/"+filepath.Base(p)+".gz"] = readFile(t, p)
	}
	for shell, path := range map[string]string{"bash": "/usr/share/bash-completion/completions/kato-manager",
		"fish": "/usr/share/fish/vendor_completions.d/kato-manager.fish", "zsh": "zsh"} {
		cmd := exec.Command(bin, "completion", shell)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil || len(out) == 0 {
			t.Fatalf("kato-manager completion %s: %v", shell, err)
		}
		docs[path] = out
	}
	return docs
}

// run runs a command and returns its standard output.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// commonFiles are the files both packages install, by path, with the bytes
// they must hold: the sources in this tree. Compressed files are compared
// uncompressed.
func commonFiles(t *testing.T, b built) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"/etc/kato/kato.toml":                   config.DefaultFile,
		"/usr/share/doc/kato-manager/README.md": readFile(t, "../README.md"),
	}
	for path, content := range b.docs {
		if path != "zsh" {
			files[path] = content
		}
	}
	dirs := map[string]string{units.SystemdDir: "/usr/lib/systemd/system/", units.SysusersDir: "/usr/lib/sysusers.d/", units.TmpfilesDir: "/usr/lib/tmpfiles.d/"}
	for _, tmpl := range units.Templates() {
		files[dirs[tmpl.Dir]+tmpl.Name] = tmpl.Content
	}
	return files
}

// checkTree compares the files extracted into root with want, and the
// binaries' versions with testVersion.
func checkTree(t *testing.T, root string, want map[string][]byte) {
	t.Helper()
	for path, content := range want {
		got := readFile(t, filepath.Join(root, path))
		if strings.HasSuffix(path, ".gz") {
			got = gunzip(t, got)
		}
		if !bytes.Equal(got, content) {
			t.Errorf("%s differs from its source", path)
		}
	}
	for _, bin := range []struct{ path, want string }{
		{"/usr/bin/kato-manager", "kato-manager " + testVersion},
		{"/usr/libexec/kato-manager/kg-worker", "kg-worker " + testVersion},
	} {
		out, err := exec.Command(filepath.Join(root, bin.path), "--version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != bin.want {
			t.Errorf("%s --version: %q %v, want %q", bin.path, out, err, bin.want)
		}
	}
}

// lintTags runs a linter and returns its tags by severity letter; line
// matches one finding and yields its severity and tag.
func lintTags(t *testing.T, output string, line *regexp.Regexp) map[string][]string {
	t.Helper()
	tags := map[string][]string{}
	for _, l := range strings.Split(output, "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			tags[m[1]] = append(tags[m[1]], m[2])
			t.Log(l)
		}
	}
	return tags
}

func checkLint(t *testing.T, linter string, tags map[string][]string, accepted map[string]string) {
	t.Helper()
	for _, tag := range tags["E"] {
		t.Errorf("%s error %s", linter, tag)
	}
	for _, tag := range tags["W"] {
		if accepted[tag] == "" {
			t.Errorf("%s warning %s: fix it, or accept it with the reason it stays", linter, tag)
		}
	}
}

func TestPackages(t *testing.T) {
	b := buildPackages(t)

	t.Run("deb", func(t *testing.T) {
		needTool(t, "dpkg-deb")
		fields := map[string]string{}
		for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Depends", "Section", "Homepage"} {
			fields[f] = strings.TrimSpace(run(t, "", "dpkg-deb", "-f", b.deb, f))
		}
		if fields["Package"] != "kato-manager" || fields["Version"] != testVersion || fields["Maintainer"] != DefaultMaintainer ||
			fields["Section"] != "admin" || fields["Homepage"] == "" {
			t.Errorf("control fields %v", fields)
		}
		if !regexp.MustCompile(`^libc6 \(>= 2\.[0-9]+\), systemd \(>= 247\)$`).MatchString(fields["Depends"]) {
			t.Errorf("Depends: %s", fields["Depends"])
		}
		if got := strings.TrimSpace(run(t, "", "dpkg-deb", "-I", b.deb, "conffiles")); got != "/etc/kato/kato.toml" {
			t.Errorf("conffiles: %q, want /etc/kato/kato.toml", got)
		}

		// Exactly these files, with these modes.
		want := map[string]string{
			"/usr/bin/kato-manager":                           "-rwxr-xr-x",
			"/usr/libexec/kato-manager/kg-worker":             "-rwxr-xr-x",
			"/usr/share/zsh/vendor-completions/_kato-manager": "-rw-r--r--",
			"/usr/share/doc/kato-manager/copyright":           "-rw-r--r--",
			"/usr/share/doc/kato-manager/changelog.gz":        "-rw-r--r--",
		}
		for path := range commonFiles(t, b) {
			want[path] = "-rw-r--r--"
		}
		want["/etc/kato/kato.toml"] = "-rw-r-----" // holds the MongoDB URL
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(run(t, "", "dpkg-deb", "-c", b.deb)), "\n") {
			f := strings.Fields(l)
			if len(f) < 6 || f[0][0] == 'd' {
				continue
			}
			if f[1] != "root/root" {
				t.Errorf("%s belongs to %s", f[5], f[1])
			}
			got[strings.TrimPrefix(f[5], ".")] = f[0]
		}
		for path, mode := range want {
			if got[path] != mode {
				t.Errorf("%s: mode %q, want %q", path, got[path], mode)
			}
		}
		for path := range got {
			if _, ok := want[path]; !ok {
				t.Errorf("unexpected file %s", path)
			}
		}

		root := t.TempDir()
		run(t, "", "dpkg-deb", "-x", b.deb, root)
		files := commonFiles(t, b)
		files["/usr/share/zsh/vendor-completions/_kato-manager"] = b.docs["zsh"]
		files["/usr/share/doc/kato-manager/copyright"] = readFile(t, "../LICENSE")
		checkTree(t, root, files)
		changelog := string(gunzip(t, readFile(t, filepath.Join(root, "usr/share/doc/kato-manager/changelog.gz"))))
		if !strings.HasPrefix(changelog, "kato-manager ("+testVersion+") unstable; urgency=medium\n") ||
			!strings.Contains(changelog, " -- "+DefaultMaintainer+"  ") {
			t.Errorf("changelog:\n%s", changelog)
		}

		control := t.TempDir()
		run(t, "", "dpkg-deb", "-e", b.deb, control)
		for script, src := range map[string]string{"postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
			info, err := os.Stat(filepath.Join(control, script))
			if err != nil || info.Mode().Perm() != 0o755 {
				t.Errorf("%s: %v %v", script, info, err)
				continue
			}
			if !bytes.Equal(readFile(t, filepath.Join(control, script)), readFile(t, filepath.Join("scripts", src))) {
				t.Errorf("%s is not scripts/%s", script, src)
			}
		}
		if _, err := os.Stat(filepath.Join(control, "preinst")); err == nil {
			t.Error("the deb has a preinst; the definition names none")
		}
	})

	t.Run("lintian", func(t *testing.T) {
		lintian := needTool(t, "lintian")
		// lintian exits non-zero on errors; the tags say which.
		out, err := exec.Command(lintian, "--display-info", b.deb).CombinedOutput()
		tags := lintTags(t, string(out), regexp.MustCompile(`^([EWIPXO]): kato-manager: ([a-z0-9%-]+)`))
		if _, failed := err.(*exec.ExitError); (err != nil && !failed) || (failed && len(tags["E"]) == 0) {
			t.Fatalf("lintian: %v\n%s", err, out)
		}
		checkLint(t, "lintian", tags, acceptedLintian)
	})

	t.Run("rpm", func(t *testing.T) {
		needTool(t, "rpm")
		q := func(args ...string) string {
			return run(t, "", "rpm", append([]string{"-qp", "--nosignature"}, append(args, b.rpm)...)...)
		}
		info := q("-i")
		for _, want := range []string{"Name        : kato-manager\n", "Version     : " + testVersion + "\n", "Release     : 1\n",
			"License     : MIT\n", "Packager    : " + DefaultMaintainer + "\n", "URL         : https://github.com/kato-manager/kato-manager\n"} {
			if !strings.Contains(info, want) {
				t.Errorf("rpm -qpi lacks %q:\n%s", want, info)
			}
		}
		requires := strings.Fields(strings.ReplaceAll(q("--requires"), "\n", " ; "))
		if !regexp.MustCompile(`^glibc >= 2\.[0-9]+ ; systemd >= 247 ;`).MatchString(strings.Join(requires, " ")) {
			t.Errorf("requires: %v", requires)
		}

		// Exactly these files, with these flags: c config, n noreplace,
		// d documentation, l licence.
		want := map[string]string{
			"/usr/bin/kato-manager":                       "",
			"/usr/libexec/kato-manager/kg-worker":         "",
			"/usr/share/zsh/site-functions/_kato-manager": "",
			"/usr/share/licenses/kato-manager/LICENSE":    "l",
		}
		for path := range commonFiles(t, b) {
			want[path] = ""
		}
		want["/etc/kato/kato.toml"] = "cn"
		for path := range b.docs {
			if strings.HasPrefix(path, "/usr/share/man/") {
				want[path] = "d"
			}
		}
		want["/usr/share/doc/kato-manager/README.md"] = "d"
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(q("--qf", `[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]`)), "\n") {
			f := strings.Fields(l)
			if len(f) == 3 { // no flags
				f = []string{f[0], "", f[1], f[2]}
			}
			if len(f) != 4 {
				t.Fatalf("unexpected rpm -qp line %q", l)
			}
			if f[2][0] == 'd' {
				continue
			}
			got[f[0]] = f[1]
			mode := "-rw-r--r--"
			if strings.HasPrefix(f[0], "/usr/bin/") || strings.HasPrefix(f[0], "/usr/libexec/") {
				mode = "-rwxr-xr-x"
			}
			if f[0] == "/etc/kato/kato.toml" {
				mode = "-rw-r-----" // holds the MongoDB URL
			}
			if f[2] != mode || f[3] != "root:root" {
				t.Errorf("%s: %s %s, want %s root:root", f[0], f[2], f[3], mode)
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("rpm files and flags:\n%v\nwant:\n%v", got, want)
		}

		scripts := q("--scripts")
		for section, src := range map[string]string{"postinstall scriptlet": "postinstall.sh", "preuninstall scriptlet": "preremove.sh", "postuninstall scriptlet": "postremove.sh"} {
			body := strings.TrimSpace(string(readFile(t, filepath.Join("scripts", src))))
			if !strings.Contains(scripts, section+" (using /bin/sh):\n") || !strings.Contains(scripts, body) {
				t.Errorf("rpm %s is not scripts/%s:\n%s", section, src, scripts)
			}
		}
		if changelog := q("--changelog"); !strings.Contains(changelog, DefaultMaintainer+" - "+testVersion+"-1\n") {
			t.Errorf("rpm changelog:\n%s", changelog)
		}

		needTool(t, "rpm2cpio")
		cpio := needTool(t, "cpio")
		root := t.TempDir()
		cmd := exec.Command("sh", "-c", `rpm2cpio "$1" | "$2" -idm --quiet --no-absolute-filenames`, "sh", b.rpm, cpio)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("extract rpm: %v\n%s", err, out)
		}
		files := commonFiles(t, b)
		files["/usr/share/zsh/site-functions/_kato-manager"] = b.docs["zsh"]
		files["/usr/share/licenses/kato-manager/LICENSE"] = readFile(t, "../LICENSE")
		checkTree(t, root, files)
	})

	t.Run("rpmlint", func(t *testing.T) {
		rpmlint := needTool(t, "rpmlint")
		cpio := needTool(t, "cpio")
		// rpmlint unpacks with `rpm2cpio | cpio -id`, and nfpm writes the
		// payload with absolute names: unguarded, cpio would write the
		// package's files onto this host. The cpio rpmlint finds first
		// keeps them in its directory.
		guard := t.TempDir()
		shim := "#!/bin/sh\nexec " + cpio + " --no-absolute-filenames \"$@\"\n"
		if err := os.WriteFile(filepath.Join(guard, "cpio"), []byte(shim), 0o755); err != nil {
			t.Fatal(err)
		}
		files := strings.Fields(run(t, "", "rpm", "-qpl", "--nosignature", b.rpm))
		var absent []string
		for _, f := range files {
			if _, err := os.Lstat(f); os.IsNotExist(err) {
				absent = append(absent, f)
			}
		}
		cmd := exec.Command(rpmlint, "-c", "rpmlint.toml", b.rpm)
		cmd.Env = append(os.Environ(), "PATH="+guard+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, _ := cmd.CombinedOutput() // rpmlint exits non-zero on errors; the tags say which
		for _, f := range absent {
			if _, err := os.Lstat(f); err == nil {
				t.Errorf("rpmlint unpacked %s onto this host; delete it", f)
			}
		}
		tags := lintTags(t, string(out), regexp.MustCompile(`^kato-manager\.[a-z0-9_]+: ([EW]): ([a-z0-9%-]+)`))
		if !strings.Contains(string(out), "1 packages and 0 specfiles checked") {
			t.Fatalf("rpmlint did not check the package:\n%s", out)
		}
		checkLint(t, "rpmlint", tags, acceptedRpmlint)
	})
}

// TestBuildRejects checks the options Build refuses before it compiles
// anything.
func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no root", Options{OutDir: "x", Version: "1.0.0"}, `invalid root "": must name the source tree`},
		{"no output directory", Options{Root: "..", Version: "1.0.0"}, `invalid output directory "": must name a directory`},
		{"root without a definition", Options{Root: ".", OutDir: "x", Version: "1.0.0"}, "invalid root .: no package definition"},
		{"bad version", Options{Root: "..", OutDir: "x", Version: "1.0-1"}, `invalid version "1.0-1": character '-' not allowed`},
		{"unknown format", Options{Root: "..", OutDir: "x", Version: "1.0.0", Formats: []string{"deb", "apk"}}, `invalid format "apk": must be one of deb, rpm`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if tc.opts.OutDir != "" {
				tc.opts.OutDir = out
			}
			_, err := Build(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("Build made %s before refusing", out)
			}
		})
	}
}

// TestDefinitionInstallsEveryTemplate checks that nfpm.yaml installs every
// file units.Templates() holds, so the package and install-units agree.
func TestDefinitionInstallsEveryTemplate(t *testing.T) {
	data := string(readFile(t, "nfpm.yaml"))
	for _, tmpl := range units.Templates() {
		if src := "src: ${STAGE}/" + tmpl.Dir + "/" + tmpl.Name + "\n"; !strings.Contains(data, src) {
			t.Errorf("nfpm.yaml lacks %q", strings.TrimSpace(src))
		}
	}
}
