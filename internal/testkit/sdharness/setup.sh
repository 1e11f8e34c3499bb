# setup.sh prepares the root of a throwaway systemd machine and boots it,
# again after every reboot. It runs as the first process of fresh pid, mount,
# network, UTS, IPC and cgroup namespaces, before the chroot.
#
# Arguments: ROOT CONSOLE BOOT UNIT...
#   ROOT     an empty host directory; a tmpfs is mounted on it in this mount
#            namespace only and holds the overlay's upper layer
#   CONSOLE  a host pseudo-terminal that becomes the machine's /dev/console
#   BOOT     the script (boot.sh) that boots systemd once
#   UNIT     units to mask before systemd starts
#
# The machine's root is an overlay whose lower layer is the host's root, so
# nothing the machine writes (systemd-tmpfiles cleaning /tmp included) can
# reach the host's files. The overlay lives in this mount namespace, for as
# long as this script runs: each boot gets a pid and mount namespace of its
# own on top of it, so a reboot (systemd's PID 1 exiting) keeps what was
# written to disk and starts afresh with /run, /tmp, /dev and /proc, as a
# real reboot does.
set -eu

root=$1
console=$2
boot=$3
shift 3

mount -t tmpfs -o mode=0700 tmpfs "$root"
mkdir "$root/upper" "$root/work" "$root/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$root/upper,workdir=$root/work" "$root/merged"
m=$root/merged

ip link set lo up

mkdir -p "$m/etc/systemd/system"
for unit in "$@"; do
	ln -sfn -- /dev/null "$m/etc/systemd/system/$unit"
done

# systemd exits on reboot (and poweroff); boot it again. The machine ends
# when the harness kills it.
while :; do
	unshare --pid --fork --kill-child=SIGKILL --mount --propagation private \
		/bin/sh -c "$boot" sdharness-boot "$m" "$console" || true
done
