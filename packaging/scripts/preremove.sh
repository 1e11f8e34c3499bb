#!/bin/sh
# Before kato-manager's files go: the deb's prerm, the RPM's %preun.
#
# dpkg calls it with "remove" when the package is removed or purged, and
# with "upgrade", "deconfigure" or "failed-upgrade" otherwise. RPM calls it
# with the number of kato-manager packages left once this one is gone: 0
# when it is erased, 1 on an upgrade.
#
# On removal every instance and worker stops, with the targets that group
# them, and so do serve, the liveness check and root's queue helpers
# (kato-queue.socket). Nothing else changes: the registry, the queue, the environment files,
# the drop-ins and what is enabled stay, so a reinstall finds them. An
# upgrade stops nothing: the new package's postinstall restarts what runs.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	if command -v deb-systemd-invoke >/dev/null 2>&1; then
		deb-systemd-invoke stop kato-manager.service kato-liveness.timer kato-liveness.service kato-queue.socket 'kato-queue@*.service' kato.target kg-workers.target 'kato@*.service' 'kg-worker@*.service' 'kato-front@*.service' || failed=yes
	else
		systemctl stop kato-manager.service kato-liveness.timer kato-liveness.service kato-queue.socket 'kato-queue@*.service' kato.target kg-workers.target 'kato@*.service' 'kg-worker@*.service' 'kato-front@*.service' || failed=yes
	fi
	if [ -n "${failed:-}" ]; then
		echo "kato-manager: an instance or worker did not stop; see systemctl list-units 'kato@*' 'kg-worker@*'" >&2
	fi
fi
exit 0
