// Package packaging builds kato-manager's deb and rpm packages from the
// source tree with nfpm.
//
// The package definition is nfpm.yaml beside this file; the maintainer
// scripts are in scripts/. Build compiles the binaries with the package
// version, takes the unit files from units.Templates() (the bytes
// `kato-manager install-units` writes), has the kato-manager it built write
// the man pages and the bash, zsh and fish completions from its command
// tree, compresses the man pages and the changelog, and has nfpm write one
// package per format.
package packaging

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/chglog"
	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/kato-manager/kato-manager/units"
)

// Name is the name of the package.
const Name = "kato-manager"

// DefaultMaintainer is the Maintainer (deb) and Packager (rpm) of packages
// built without Options.Maintainer.
const DefaultMaintainer = "The kato-manager authors <kato-manager@users.noreply.github.com>"

// DefinitionFile is the nfpm package definition, relative to the source
// tree.
const DefinitionFile = "packaging/nfpm.yaml"

// rpmRelease is the rpm Release of every package: the version says all, as
// the deb's has no Debian revision.
const rpmRelease = "1"

// formats are the package formats Build knows, in the order it builds them.
var formats = []string{"deb", "rpm"}

// binaries are the programs the package installs, by the name of their
// directory under cmd/.
var binaries = []string{"kato-manager", "kg-worker"}

// Options says what Build builds and where. Root and OutDir are required;
// the zero value of every other field has a useful default.
type Options struct {
	// Root is the source tree: the module root holding cmd/, units/,
	// config/ and packaging/.
	Root string
	// OutDir receives the packages; it is created if missing.
	OutDir string
	// Version is the package version, checked with ValidateVersion; empty
	// means GitVersion of Root.
	Version string
	// Formats lists the package formats to build, "deb" and "rpm"; empty
	// means both.
	Formats []string
	// Maintainer is who the packages name as their maintainer; empty means
	// DefaultMaintainer.
	Maintainer string
	// Time is the modification time of every packaged file and the date of
	// the changelog entry; zero means SOURCE_DATE_EPOCH when set, else the
	// time of the commit at HEAD, else now. A fixed time makes the packages
	// reproducible.
	Time time.Time
	// Go is the go command that compiles the binaries; empty means "go".
	Go string
}

// Package is one package Build wrote.
type Package struct {
	// Format is "deb" or "rpm".
	Format string
	// Path is the package file, inside Options.OutDir, named as the format
	// customarily names it (kato-manager_1.2.3_amd64.deb,
	// kato-manager-1.2.3-1.x86_64.rpm).
	Path string
	// Version is the package version.
	Version string
}

// Build compiles kato-manager and kg-worker and writes the packages into
// opts.OutDir, one per format, returning them in the order of opts.Formats.
func Build(ctx context.Context, opts Options) ([]Package, error) {
	b, err := newBuild(ctx, opts)
	if err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp("", "kato-manager-package-")
	if err != nil {
		return nil, fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	b.stage = stage

	if err := b.compile(ctx); err != nil {
		return nil, err
	}
	if err := b.stageFiles(); err != nil {
		return nil, err
	}
	cfg, err := b.definition()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	var out []Package
	for _, format := range b.formats {
		p, err := b.write(cfg, format)
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// build is one run of Build with its options resolved.
type build struct {
	root, outDir, stage string
	version, maintainer string
	formats             []string
	time                time.Time
	goCmd, arch, commit string
	// glibc is the newest glibc symbol version the binaries need.
	glibc string
}

func newBuild(ctx context.Context, opts Options) (*build, error) {
	if opts.Root == "" {
		return nil, errors.New("invalid root \"\": must name the source tree")
	}
	if opts.OutDir == "" {
		return nil, errors.New("invalid output directory \"\": must name a directory")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("source tree %s: %w", opts.Root, err)
	}
	if _, err := os.Stat(filepath.Join(root, DefinitionFile)); err != nil {
		return nil, fmt.Errorf("invalid root %s: no package definition: %w", opts.Root, err)
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w", opts.OutDir, err)
	}
	b := &build{root: root, outDir: outDir, version: opts.Version, maintainer: opts.Maintainer,
		formats: opts.Formats, time: opts.Time, goCmd: opts.Go}
	if len(b.formats) == 0 {
		b.formats = formats
	}
	for _, f := range b.formats {
		if !slices.Contains(formats, f) {
			return nil, fmt.Errorf("invalid format %q: must be one of %s", f, strings.Join(formats, ", "))
		}
	}
	if b.version == "" {
		if b.version, err = GitVersion(ctx, root); err != nil {
			return nil, fmt.Errorf("tell the package version: %w; or give it, as in make packages VERSION=1.2.3", err)
		}
	} else if err := ValidateVersion(b.version); err != nil {
		return nil, err
	}
	if b.maintainer == "" {
		b.maintainer = DefaultMaintainer
	}
	if b.goCmd == "" {
		b.goCmd = "go"
	}
	// The commit only adds to the changelog: a source tree given a version
	// need not be a git checkout.
	b.commit, _ = git(ctx, root, "rev-parse", "--short", "HEAD")
	if b.time.IsZero() {
		b.time, err = buildTime(ctx, root)
		if err != nil {
			return nil, err
		}
	}
	b.time = b.time.UTC().Truncate(time.Second)
	arch, err := b.goOutput(ctx, "env", "GOARCH")
	if err != nil {
		return nil, err
	}
	b.arch = arch
	return b, nil
}

// buildTime is SOURCE_DATE_EPOCH, else HEAD's commit time, else now.
func buildTime(ctx context.Context, root string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: must be seconds since 1970", s)
		}
		return time.Unix(n, 0), nil
	}
	if s, err := git(ctx, root, "log", "-1", "--format=%ct"); err == nil {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0), nil
		}
	}
	return time.Now(), nil
}

// buildEnv is the one build configuration (build.env), shared with the
// Makefile.
//
//go:embed build.env
var buildEnv string

// BuildEnv returns the variables of build.env, in the file's order.
func BuildEnv() [][2]string {
	var env [][2]string
	for _, line := range strings.Split(buildEnv, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env = append(env, [2]string{k, v})
	}
	return env
}

// goFlags are the words of build.env's GOFLAGS.
func goFlags() []string {
	for _, kv := range BuildEnv() {
		if kv[0] == "GOFLAGS" {
			return strings.Fields(kv[1])
		}
	}
	return nil
}

func (b *build) goOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.goCmd, args...)
	cmd.Dir = b.root
	cmd.Env = os.Environ()
	for _, kv := range BuildEnv() {
		if _, set := os.LookupEnv(kv[0]); !set {
			cmd.Env = append(cmd.Env, kv[0]+"="+kv[1])
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", b.goCmd, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// compile builds the binaries into the staging directory. cgo stays on:
// the queue needs SQLite.
func (b *build) compile(ctx context.Context) error {
	ldflags := "-s -w -X main.version=" + b.version
	for _, name := range binaries {
		// The flags of build.env's GOFLAGS also on the command line: they
		// hold whatever GOFLAGS the environment sets.
		args := append([]string{"build"}, goFlags()...)
		_, err := b.goOutput(ctx, append(args, "-ldflags", ldflags,
			"-o", filepath.Join(b.stage, name), "./cmd/"+name)...)
		if err != nil {
			return fmt.Errorf("compile %s: %w", name, err)
		}
		if err := checkToolchain(filepath.Join(b.stage, name), filepath.Join(b.root, "go.mod")); err != nil {
			return err
		}
		v, err := glibcVersion(filepath.Join(b.stage, name))
		if err != nil {
			return err
		}
		if compareVersions(v, b.glibc) > 0 {
			b.glibc = v
		}
	}
	if b.glibc == "" {
		return errors.New("the binaries use no versioned glibc symbol: cannot state the glibc they need")
	}
	return nil
}

// checkToolchain refuses a binary built by a Go older than the toolchain
// line of go.mod: the shipped binaries must carry that release's
// standard-library fixes, whatever GOTOOLCHAIN the build ran with.
func checkToolchain(binary, gomod string) error {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return fmt.Errorf("read %s: %w", gomod, err)
	}
	want := ""
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "toolchain go"); ok {
			want = strings.TrimSpace(v)
		}
	}
	if want == "" {
		return fmt.Errorf("%s has no toolchain line", gomod)
	}
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("read build info of %s: %w", binary, err)
	}
	got := strings.TrimPrefix(info.GoVersion, "go")
	if i := strings.IndexAny(got, " -"); i >= 0 {
		got = got[:i]
	}
	if compareVersions(got, want) < 0 {
		return fmt.Errorf("%s was built with %s, older than go%s of %s: build with GOTOOLCHAIN=go%s (make packages sets it)", binary, info.GoVersion, want, gomod, want)
	}
	return nil
}

// glibcVersion returns the newest GLIBC_x.y symbol version the ELF file at
// path imports, "" when it imports none.
func glibcVersion(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("read binary %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.ImportedSymbols()
	if err != nil {
		return "", fmt.Errorf("read imported symbols of %s: %w", path, err)
	}
	newest := ""
	for _, s := range syms {
		if v, ok := strings.CutPrefix(s.Version, "GLIBC_"); ok && compareVersions(v, newest) > 0 {
			newest = v
		}
	}
	return newest, nil
}

// compareVersions compares dotted decimal versions part by part, so 2.34 is
// newer than 2.4; "" is older than any version.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	if a == "" || b == "" {
		return strings.Compare(a, b)
	}
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// stageFiles writes what the definition takes from ${STAGE} besides the
// binaries: the unit files, the man pages, the completions and the
// changelog.
func (b *build) stageFiles() error {
	for _, t := range units.Templates() {
		if err := writeFile(filepath.Join(b.stage, t.Dir, t.Name), t.Content); err != nil {
			return err
		}
	}
	if err := b.stageDocs(); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(b.stage, "changelog.gz"), gzipped(b.changelog())); err != nil {
		return err
	}
	return b.rpmChangelog().Save(filepath.Join(b.stage, "changelog.yml"))
}

// Completions are the shell completion scripts in ${STAGE}/completion, by
// shell, as kato-manager's `completion SHELL` writes them.
var Completions = map[string]string{"bash": "kato-manager", "zsh": "_kato-manager", "fish": "kato-manager.fish"}

// stageDocs has the kato-manager just built write its man pages, one per
// command, gzipped into ${STAGE}/man, and its completions into
// ${STAGE}/completion: both come from its command tree, so they document
// exactly the commands and flags it has.
func (b *build) stageDocs() error {
	bin := filepath.Join(b.stage, "kato-manager")
	raw := filepath.Join(b.stage, "man.raw")
	env := append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", b.time.Unix()))
	runBin := func(args ...string) ([]byte, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("kato-manager %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out, nil
	}
	if _, err := runBin("__man", raw); err != nil {
		return err
	}
	pages, err := os.ReadDir(raw)
	if err != nil {
		return fmt.Errorf("read man pages: %w", err)
	}
	for _, p := range pages {
		page, err := os.ReadFile(filepath.Join(raw, p.Name()))
		if err != nil {
			return fmt.Errorf("read man page: %w", err)
		}
		if err := writeFile(filepath.Join(b.stage, "man", p.Name()+".gz"), gzipped(page)); err != nil {
			return err
		}
	}
	for shell, name := range Completions {
		script, err := runBin("completion", shell)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(b.stage, "completion", name), script); err != nil {
			return err
		}
	}
	return nil
}

// changelog is the Debian changelog of the package: one entry for the
// version built.
func (b *build) changelog() []byte {
	return fmt.Appendf(nil, "%s (%s) unstable; urgency=medium\n\n  * %s.\n\n -- %s  %s\n",
		Name, b.version, b.changeNote(), b.maintainer, b.time.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
}

// rpmChangelog is the same entry for the rpm header, in the form nfpm
// reads.
func (b *build) rpmChangelog() *chglog.ChangeLogEntries {
	return &chglog.ChangeLogEntries{{
		Semver:   b.version + "-" + rpmRelease,
		Date:     b.time,
		Packager: b.maintainer,
		Changes:  chglog.ChangeLogChanges{{Commit: b.commit, Note: b.changeNote()}},
	}}
}

func (b *build) changeNote() string {
	if b.commit == "" {
		return "kato-manager " + b.version
	}
	return "kato-manager " + b.version + ", built from commit " + b.commit
}

// definition reads nfpm.yaml with the build's variables filled in. It
// refuses a definition that names an unknown variable or leaves out one of
// units.Templates(): the package would miss a file `install-units` writes.
func (b *build) definition() (*nfpm.Config, error) {
	vars := map[string]string{
		"VERSION":    b.version,
		"ARCH":       b.arch,
		"GLIBC":      b.glibc,
		"SRC":        b.root,
		"STAGE":      b.stage,
		"MAINTAINER": b.maintainer,
	}
	var unknown []string
	path := filepath.Join(b.root, DefinitionFile)
	cfg, err := nfpm.ParseFileWithEnvMapping(path, func(name string) string {
		v, ok := vars[name]
		// nfpm itself asks for NFPM_*PASSPHRASE, for signing keys.
		if !ok && !strings.HasPrefix(name, "NFPM_") {
			unknown = append(unknown, name)
		}
		return v
	})
	if err != nil {
		return nil, fmt.Errorf("package definition %s: %w", path, err)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("package definition %s: unknown variable %s: must be one of VERSION, ARCH, GLIBC, SRC, STAGE, MAINTAINER", path, strings.Join(unknown, ", "))
	}
	for _, t := range units.Templates() {
		src := filepath.Join(b.stage, t.Dir, t.Name)
		if !slices.ContainsFunc(cfg.Contents, func(c *files.Content) bool { return c.Source == src }) {
			return nil, fmt.Errorf("package definition %s: does not install ${STAGE}/%s/%s from units.Templates()", path, t.Dir, t.Name)
		}
	}
	if cfg.Contents, err = expandDocGlobs(cfg.Contents); err != nil {
		return nil, fmt.Errorf("package definition %s: %w", path, err)
	}
	for _, s := range []*string{&cfg.Scripts.PreInstall, &cfg.Scripts.PostInstall, &cfg.Scripts.PreRemove, &cfg.Scripts.PostRemove} {
		if *s != "" && !filepath.IsAbs(*s) {
			*s = filepath.Join(b.root, *s)
		}
	}
	cfg.Maintainer = b.maintainer
	cfg.RPM.Packager = b.maintainer
	cfg.MTime = b.time
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("package definition %s: %w", path, err)
	}
	return &cfg, nil
}

// expandDocGlobs replaces each rpm %doc entry whose source is a glob, which
// nfpm takes only for plain files, by one entry per file it matches,
// installed into the destination directory under its own name.
func expandDocGlobs(contents files.Contents) (files.Contents, error) {
	var out files.Contents
	for _, c := range contents {
		if c.Type != files.TypeRPMDoc || !strings.ContainsAny(c.Source, "*?[") {
			out = append(out, c)
			continue
		}
		matches, err := filepath.Glob(c.Source)
		if err != nil || len(matches) == 0 {
			return nil, fmt.Errorf("%s matches no file: %v", c.Source, err)
		}
		for _, m := range matches {
			e := *c
			e.Source, e.Destination = m, filepath.Join(c.Destination, filepath.Base(m))
			if c.FileInfo != nil {
				fi := *c.FileInfo
				e.FileInfo = &fi
			}
			out = append(out, &e)
		}
	}
	return out, nil
}

// write makes the package of one format.
func (b *build) write(cfg *nfpm.Config, format string) (Package, error) {
	info, err := cfg.Get(format)
	if err != nil {
		return Package{}, fmt.Errorf("%s package: %w", format, err)
	}
	info = nfpm.WithDefaults(info)
	if format == "rpm" {
		// A deb carries its changelog as a file (${STAGE}/changelog.gz).
		info.Changelog = filepath.Join(b.stage, "changelog.yml")
		info.Release = rpmRelease
	}
	packager, err := nfpm.Get(format)
	if err != nil {
		return Package{}, fmt.Errorf("%s package: %w", format, err)
	}
	path := filepath.Join(b.outDir, packager.ConventionalFileName(info))
	info.Target = path
	var buf bytes.Buffer
	if err := packager.Package(info, &buf); err != nil {
		return Package{}, fmt.Errorf("%s package: %w", format, err)
	}
	if err := writeFile(path, buf.Bytes()); err != nil {
		return Package{}, err
	}
	return Package{Format: format, Path: path, Version: b.version}, nil
}

// writeFile writes data to path with mode 0644, creating its directory.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// gzipped compresses data as `gzip -9n` does: best compression, no name and
// no time stamp in the header, so equal input gives equal output.
func gzipped(data []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
	zw.Write(data)                                           // writes to a bytes.Buffer do not fail
	zw.Close()
	return buf.Bytes()
}
