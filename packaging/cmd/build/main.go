// Command build makes kato-manager's deb and rpm packages; `make packages`
// runs it. By default the version comes from `git describe --tags --always`
// and the packages land in dist/.
//
// Usage:
//
//	go run ./packaging/cmd/build [-version V] [-out DIR] [-format deb,rpm] [-maintainer "NAME <EMAIL>"]
//	go run ./packaging/cmd/build -print-version
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kato-manager/kato-manager/packaging"
)

func main() {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	version := fs.String("version", "", "package version (default: from git describe --tags --always)")
	out := fs.String("out", "dist", "directory the packages are written to")
	format := fs.String("format", "deb,rpm", "package formats, separated by commas")
	maintainer := fs.String("maintainer", packaging.DefaultMaintainer, "maintainer named in the packages")
	root := fs.String("root", ".", "source tree: the module root")
	printVersion := fs.Bool("print-version", false, "print the version the packages would get and exit (the Makefile's VERSION)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "build: unexpected argument %q; give the version with -version\n", fs.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *printVersion {
		v, err := packaging.GitVersion(ctx, *root)
		if err != nil {
			fmt.Fprintf(os.Stderr, "build: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(v)
		return
	}
	pkgs, err := packaging.Build(ctx, packaging.Options{
		Root:       *root,
		OutDir:     *out,
		Version:    *version,
		Formats:    strings.Split(*format, ","),
		Maintainer: *maintainer,
	})
	for _, p := range pkgs {
		fmt.Println(p.Path)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n", err)
		stop()
		os.Exit(1)
	}
}
