#!/bin/sh
# After kato-manager's files are in place: the deb's postinst, the RPM's %post.
#
# dpkg calls it with "configure" and the version configured before (empty on
# a first install), or "abort-*" to roll back a failed step. RPM calls it
# with the number of kato-manager packages installed once this one is: 1 on
# a first install, 2 on an upgrade.
#
# Every time: the kato user and group (sysusers.d), /var/lib/kato and
# /etc/kato/instances (tmpfiles.d), kato.toml made 0640 root:kato, and a
# systemd reload for the new units.
# On a first install: kato.target and kg-workers.target are enabled. They
# start nothing by themselves; enabled, they bring back at boot the instances
# and workers the operator starts with kato-manager. kato-queue.socket, root's
# way to the queue (its commands and serve do their database work through
# it, as kato), and kato-liveness.timer (the liveness check, which restarts
# an instance whose health request keeps failing) are enabled on a first
# install and on an upgrade from a version without them, and started every
# time.
# On an upgrade: the instances, the workers and serve (kato-manager.service)
# that run are restarted, so they run the new files; stopped ones stay
# stopped. An instance that ran as kato
# under an earlier version runs as its own user from this restart on;
# systemd moves its state directory to /var/lib/private/kato/instances. Their registry, queue,
# environment files, drop-ins and the configuration are left as they are.
#
# Without a running systemd (a chroot, a container build, dpkg --root)
# nothing is started, stopped or reloaded. On Debian, deb-systemd-helper and
# deb-systemd-invoke stand in for systemctl: they keep track of what the
# package enabled, for the purge, and ask policy-rc.d before a restart.
set -e

case "$1" in
configure)
	if [ -n "$2" ]; then action=upgrade; else action=install; fi
	;;
abort-upgrade | abort-remove | abort-deconfigure)
	action=reconfigure
	;;
1)
	action=install
	;;
[0-9]*)
	action=upgrade
	;;
*)
	exit 0
	;;
esac

# DPKG_ROOT is set when dpkg installs into another root (dpkg --root).
root=${DPKG_ROOT:-}

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers ${root:+--root="$root"} kato.conf
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles ${root:+--root="$root"} --create kato.conf ||
		echo "kato-manager: systemd-tmpfiles could not create every path of tmpfiles.d/kato.conf" >&2
fi

# kato.toml holds the MongoDB URL: readable by root and the kato group (the
# workers read it) only. It is unpacked root:root, before the group exists;
# a file whose group the administrator changed is left alone.
conf="$root/etc/kato/kato.toml"
if [ -z "$root" ] && [ -f "$conf" ] && [ ! -L "$conf" ] && command -v stat >/dev/null 2>&1 &&
	[ "$(stat -c %U:%G "$conf")" = root:root ]; then
	chgrp kato "$conf" && chmod 0640 "$conf" ||
		echo "kato-manager: could not make $conf 0640 root:kato" >&2
fi

if [ "$action" = install ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper enable kato.target kg-workers.target kato-queue.socket kato-liveness.timer
	elif command -v systemctl >/dev/null 2>&1; then
		systemctl ${root:+--root="$root"} --no-reload enable kato.target kg-workers.target kato-queue.socket kato-liveness.timer
	fi
elif [ "$action" = upgrade ]; then
	# deb-systemd-helper remembers what the package enabled: an operator's
	# disable stays. RPM cannot tell the two apart, and enables it.
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper debian-installed kato-queue.socket || deb-systemd-helper enable kato-queue.socket
		deb-systemd-helper debian-installed kato-liveness.timer || deb-systemd-helper enable kato-liveness.timer
	elif command -v systemctl >/dev/null 2>&1; then
		systemctl ${root:+--root="$root"} --no-reload enable kato-queue.socket kato-liveness.timer
	fi
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload
	if command -v deb-systemd-invoke >/dev/null 2>&1; then
		deb-systemd-invoke start kato-queue.socket ||
			echo "kato-manager: kato-queue.socket did not start; root's queue commands need it" >&2
	else
		systemctl start kato-queue.socket ||
			echo "kato-manager: kato-queue.socket did not start; root's queue commands need it" >&2
	fi
	# Started only when enabled: an operator's disable stays.
	if systemctl -q is-enabled kato-liveness.timer 2>/dev/null; then
		if command -v deb-systemd-invoke >/dev/null 2>&1; then
			deb-systemd-invoke start kato-liveness.timer || liveness=failed
		else
			systemctl start kato-liveness.timer || liveness=failed
		fi
		if [ -n "${liveness:-}" ]; then
			echo "kato-manager: kato-liveness.timer did not start; no instance is restarted by liveness" >&2
		fi
	fi
	if [ "$action" = upgrade ]; then
		# An instance whose id is too long for kato@.service's User=kato-%i
		# runs as the user its drop-in names, which versions before that did
		# not write: on the new units alone it fails to start (it never runs
		# as anyone else). kato-manager renders its files again as it
		# restarts it. Ids hold only letters, digits, '-' and '_'.
		rerender=
		for dropin in /etc/systemd/system/kato@?*.service.d/kato-manager.conf; do
			[ -f "$dropin" ] && ! grep -q '^User=' "$dropin" || continue
			id=${dropin#/etc/systemd/system/kato@}
			id=${id%.service.d/kato-manager.conf}
			if [ ${#id} -gt 26 ] && systemctl -q is-active "kato@$id.service"; then
				rerender="$rerender $id"
			fi
		done
		if command -v deb-systemd-invoke >/dev/null 2>&1; then
			deb-systemd-invoke try-restart 'kato@*.service' 'kg-worker@*.service' kato-manager.service || failed=yes
		else
			systemctl try-restart 'kato@*.service' 'kg-worker@*.service' kato-manager.service || failed=yes
		fi
		for id in $rerender; do
			kato-manager restart "$id" || failed=yes
		done
		if [ -n "${failed:-}" ]; then
			echo "kato-manager: an instance or worker did not restart; see kato-manager status and kato-manager workers health" >&2
		fi
	fi
fi
exit 0
