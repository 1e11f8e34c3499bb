# boot.sh boots systemd once on the machine's root. setup.sh runs it as the
# first process of a pid and mount namespace of its own, inside the
# machine's other namespaces, for every boot.
#
# Arguments: ROOT CONSOLE
#   ROOT     the machine's root, the overlay setup.sh mounted
#   CONSOLE  a host pseudo-terminal that becomes the machine's /dev/console
#
# /dev, /run, /tmp, /sys/fs/cgroup and /dev/shm are fresh mounts, /sys and
# /proc/sys are read-only: the machine cannot change host devices or
# kernel-wide settings. They vanish with this boot's mount namespace.
set -eu

m=$1
console=$2

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

# Shared propagation, as systemd makes / on a real boot (and nspawn for a
# container): systemd sets up a unit's credentials (LoadCredential=) in a
# namespace of its own and moves them into place through it, which a
# private root never shows the unit. Nothing propagates to the host: this
# boot's mount namespace was made private from it.
mount --make-rshared "$m"

cd "$m"
exec chroot "$m" env container=other SYSTEMD_COLORS=0 /lib/systemd/systemd --unit=multi-user.target
