// Package e2e holds the end-to-end tests of kato-manager against a real
// systemd: each test boots systemd as PID 1 in throwaway namespaces (see
// internal/testkit/sdharness), installs the binaries built from this tree and drives
// them exactly as an operator would, with kato-manager, systemctl and
// journalctl.
package e2e
