# setup.sh prepares the root of a throwaway systemd machine and executes
# systemd as its PID 1. It runs as the first process of fresh pid, mount,
# network, UTS, IPC and cgroup namespaces, before the chroot.
#
# Arguments: ROOT CONSOLE UNIT...
#   ROOT     an empty host directory; a tmpfs is mounted on it in this mount
#            namespace only and holds the overlay's upper layer
#   CONSOLE  a host pseudo-terminal that becomes the machine's /dev/console
#   UNIT     units to mask before systemd starts
#
# The machine's root is an overlay whose lower layer is the host's root, so
# nothing the machine writes (systemd-tmpfiles cleaning /tmp included) can
# reach the host's files. /dev, /run, /tmp, /sys/fs/cgroup and /dev/shm are
# fresh mounts, /sys and /proc/sys are read-only: the machine cannot change
# host devices or kernel-wide settings.
set -eu

root=$1
console=$2
shift 2

mount -t tmpfs -o mode=0700 tmpfs "$root"
mkdir "$root/upper" "$root/work" "$root/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$root/upper,workdir=$root/work" "$root/merged"
m=$root/merged

mount -t proc -o nosuid,nodev,noexec proc "$m/proc"
mount --bind "$m/proc/sys" "$m/proc/sys"
mount -o remount,bind,ro "$m/proc/sys"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$m/sys/fs/cgroup"

mount -t tmpfs -o mode=0755,nosuid tmpfs "$m/dev"
for node in null zero full random urandom tty; do
	touch "$m/dev/$node"
	mount --bind "/dev/$node" "$m/dev/$node"
done
mkdir "$m/dev/pts" "$m/dev/shm" "$m/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/dev/shm"
mount -t mqueue -o nosuid,nodev,noexec mqueue "$m/dev/mqueue"
ln -s /proc/self/fd "$m/dev/fd"
ln -s /proc/self/fd/0 "$m/dev/stdin"
ln -s /proc/self/fd/1 "$m/dev/stdout"
ln -s /proc/self/fd/2 "$m/dev/stderr"
touch "$m/dev/console"
mount --bind "$console" "$m/dev/console"

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$m/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/tmp"

ip link set lo up

mkdir -p "$m/etc/systemd/system"
for unit in "$@"; do
	ln -sfn -- /dev/null "$m/etc/systemd/system/$unit"
done

cd "$m"
exec chroot "$m" env container=other SYSTEMD_COLORS=0 /lib/systemd/systemd --unit=multi-user.target
