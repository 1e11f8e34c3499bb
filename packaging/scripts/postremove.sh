#!/bin/sh
# After kato-manager's files are gone: the deb's postrm, the RPM's %postun.
#
# dpkg calls it with "remove", "purge", "upgrade" and a few more. RPM calls
# it with the number of kato-manager packages left: 0 when it is erased, 1
# on an upgrade.
#
# systemd is reloaded so that it forgets the units that went. A purge (deb
# only) also deletes what kato-manager made while it ran: the registry, the
# queue and the links to the processors' state (/var/lib/kato), the
# processors' state itself (/var/lib/private/kato, where systemd keeps it for
# their DynamicUser=), the configuration and environment files (/etc/kato),
# every instance's drop-in directories (those of its private-network units
# too), every group's drop-in directory, the workers' drop-in with their
# resource limits, and the symbolic links that enabled the targets, the
# instances, the workers and kato-queue.socket.
# The kato user and group stay, as Debian leaves system users: files they
# own may remain elsewhere.
set -e

case "$1" in
purge) action=purge ;;
remove | upgrade | failed-upgrade | abort-install | abort-upgrade | disappear | [0-9]*) action=reload ;;
*) exit 0 ;;
esac

root=${DPKG_ROOT:-}

if [ "$action" = purge ]; then
	rm -rf "$root/var/lib/kato" "$root/var/lib/private/kato" "$root/etc/kato"
	# kato@ID.service.d and kato-group@NAME.target.d only: kato@.service.d
	# and kato-group@.target.d hold the operator's own drop-ins for every
	# instance and every group.
	for d in "$root"/etc/systemd/system/kato@?*.service.d "$root"/etc/systemd/system/kato-proxy@?*.d \
		"$root"/etc/systemd/system/kato-link@?*.d "$root"/etc/systemd/system/kato-group@?*.target.d; do
		if [ -d "$d" ]; then rm -rf "$d"; fi
	done
	# The workers' drop-in kato-manager wrote; the directory only if that
	# leaves it empty, as it also holds the operator's drop-ins.
	rm -f "$root/etc/systemd/system/kg-worker@.service.d/kato-manager.conf"
	rmdir "$root/etc/systemd/system/kg-worker@.service.d" 2>/dev/null || true
	rm -rf "$root/etc/systemd/system/kato.target.wants" "$root/etc/systemd/system/kg-workers.target.wants"
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge kato.target kg-workers.target kato-manager.service kato-queue.socket kato-liveness.timer
	fi
	rm -f "$root/etc/systemd/system/multi-user.target.wants/kato.target" \
		"$root/etc/systemd/system/multi-user.target.wants/kg-workers.target" \
		"$root/etc/systemd/system/multi-user.target.wants/kato-manager.service" \
		"$root/etc/systemd/system/sockets.target.wants/kato-queue.socket" \
		"$root/etc/systemd/system/timers.target.wants/kato-liveness.timer"
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload
fi
exit 0
