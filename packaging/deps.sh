#!/bin/sh
# Installs, with apt, the Debian packages that a job of this repository
# needs and the machine lacks, and only those, saying which. `make demo`,
# `make test` and .ci/run call it first.
#
#   packaging/deps.sh build   build kato-manager and run it in the test harness (make demo)
#   packaging/deps.sh test    all of that, plus what the test suite uses (make test)
#
# Go itself is not installed here: Debian 12's is too old to fetch the
# toolchain the Makefile names (GOTOOLCHAIN needs Go 1.21 or newer).
set -eu

# gcc, libc6-dev: the SQLite driver, the only C in the binaries; make, git:
# the build and its version; systemd, dbus, iproute2, util-linux: the
# throwaway systemd of internal/testkit/sdharness; curl, ca-certificates: requests
# to the processors inside it; sqlite3: the KG queue inside it.
build="gcc libc6-dev make git systemd dbus iproute2 util-linux curl ca-certificates sqlite3"
# lintian, rpm, rpmlint, cpio: checks of the packages `make packages`
# builds; bash-completion, zsh, fish: the completions' tests; groff-base:
# the man pages' check; dbus-user-session: the session bus of the --user
# test's unprivileged user; chromium: the dashboard's browser test;
# openssh-client, openssh-server: the --host test's ssh and the sshd of its
# second machine; postgresql: the throwaway clusters of the queue's
# PostgreSQL tests (internal/testkit/pgtest) and the shared queue of the many-hosts
# tests; redis-server: the Redis that generation-C processors (the processor
# double) share their sessions through, on the loopback and in the harness;
# haproxy: the groups' fronts (kato-front@) and their tests; nginx-light: the
# nginx least_conn baseline the front's benchmark compares with.
test="$build lintian rpm rpmlint cpio bash-completion zsh fish groff-base dbus-user-session chromium openssh-client openssh-server postgresql redis-server haproxy nginx-light"

case "${1:-}" in
build) wanted=$build ;;
test) wanted=$test ;;
*)
	echo "usage: $0 build|test" >&2
	exit 2
	;;
esac

if ! command -v go >/dev/null 2>&1; then
	echo "deps: go is not installed: install Go 1.21 or newer (https://go.dev/doc/install); the Makefile fetches the toolchain it needs" >&2
	exit 1
fi
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: no dpkg and apt here: install these packages, or their equivalents, yourself: $wanted" >&2
	exit 1
fi

missing=
for p in $wanted; do
	if [ "$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "deps: every package the $1 job needs is installed"
	exit 0
fi

echo "deps: installing what the $1 job needs and this machine lacks:$missing"
sudo=
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "deps: not root and no sudo: as root, run apt-get install$missing" >&2
		exit 1
	fi
	sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086 # one word per package
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: installed$missing"
