package e2e

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
)

// testSubnet is the network the multi-host tests join their machines on.
// It is a network of the harness's own, apart from the host's, so any
// subnet would do.
const testSubnet = "10.77.0.0/24"

// joinNetwork attaches m to lan at addr under the host name name.
func joinNetwork(t *testing.T, lan *sdharness.Network, m *machine, addr, name string) {
	t.Helper()
	if err := lan.Attach(t.Context(), m.Machine, netip.MustParseAddr(addr), name); err != nil {
		t.Fatal(err)
	}
}

// sshdConfig runs Debian's sshd for the test: its own host key, keys only,
// root allowed with a key and nothing else.
const sshdConfig = `Port 22
HostKey /etc/ssh/kato-test-host-key
PidFile /run/kato-test-sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile /root/.ssh/authorized_keys
`

// startSSHD makes m an ssh server whose root accepts the key authorized,
// and returns its host key's public half. The host key is made here, not
// taken from the host's /etc/ssh.
func (m *machine) startSSHD(authorized string) string {
	m.t.Helper()
	m.must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/ssh/kato-test-host-key")
	if err := m.WriteFile("/etc/ssh/kato-test-sshd_config", []byte(sshdConfig), 0o644); err != nil {
		m.t.Fatal(err)
	}
	if err := m.WriteFile("/root/.ssh/authorized_keys", []byte(authorized), 0o600); err != nil {
		m.t.Fatal(err)
	}
	m.must("chmod", "700", "/root/.ssh")
	m.must("systemd-run", "--unit=kato-test-sshd", "-p", "RuntimeDirectory=sshd",
		"/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/kato-test-sshd_config")
	return strings.TrimSpace(m.must("cat", "/etc/ssh/kato-test-host-key.pub"))
}

// twoHosts boots alpha and beta on one network, where alpha's root reaches
// beta's root over ssh with a key and known_hosts the test made.
func twoHosts(t *testing.T) (alpha, beta *machine) {
	t.Helper()
	lan := sdharness.NetworkForTest(t, testSubnet)
	alpha, beta = bootMachine(t), bootMachine(t)
	joinNetwork(t, lan, alpha, "10.77.0.2", "alpha")
	joinNetwork(t, lan, beta, "10.77.0.3", "beta")
	alpha.must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/.ssh/id_ed25519")
	hostKey := beta.startSSHD(alpha.must("cat", "/root/.ssh/id_ed25519.pub"))
	if err := alpha.WriteFile("/root/.ssh/known_hosts", []byte("beta "+hostKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alpha.waitFor("sshd on beta to let alpha's root in", 20*time.Second, func() bool {
		return alpha.exec("ssh", "-o", "BatchMode=yes", "beta", "true").code == 0
	})
	return alpha, beta
}

// TestRemoteHosts: kato-manager --host reaches another host's kato-manager
// through a real sshd, with a key and known_hosts the test made, and list
// --host merges two hosts.
func TestRemoteHosts(t *testing.T) {
	lan := sdharness.NetworkForTest(t, testSubnet)
	alpha, beta := bootMachine(t), bootMachine(t)
	joinNetwork(t, lan, alpha, "10.77.0.2", "alpha")
	joinNetwork(t, lan, beta, "10.77.0.3", "beta")

	// alpha is where the operator works; its root's key opens both hosts,
	// alpha included, so that it can list both.
	alpha.must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/.ssh/id_ed25519")
	clientKey := alpha.must("cat", "/root/.ssh/id_ed25519.pub")
	var knownHosts strings.Builder
	for name, m := range map[string]*machine{"alpha": alpha, "beta": beta} {
		knownHosts.WriteString(name + " " + m.startSSHD(clientKey) + "\n")
	}
	if err := alpha.WriteFile("/root/.ssh/known_hosts", []byte(knownHosts.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	alpha.waitFor("sshd on beta to let alpha's root in", 20*time.Second, func() bool {
		return alpha.exec("ssh", "-o", "BatchMode=yes", "beta", "true").code == 0
	})

	t.Run("start, list, status and stop on beta", func(t *testing.T) {
		alpha.t, beta.t = t, t
		r := alpha.km("--host", "beta", "start", "--id", "remote-1", "--name", `it's "remote"; $(touch /tmp/boom)`, "--port", "8011")
		if r.code != 0 {
			t.Fatalf("start on beta: %s", r)
		}
		// The work happened on beta, in beta's registry and systemd.
		if s := beta.activeState("kato@remote-1.service"); s != "active" {
			t.Errorf("kato@remote-1.service on beta is %s", s)
		}
		rows := beta.listJSON()
		if rows["remote-1"]["name"] != `it's "remote"; $(touch /tmp/boom)` {
			t.Errorf("beta registered %v", rows["remote-1"])
		}
		if beta.exists("/tmp/boom") || alpha.exists("/tmp/boom") {
			t.Error("a shell ran the command substitution in the name")
		}
		if len(alpha.listJSON()) != 0 {
			t.Errorf("alpha has instances of its own: %v", alpha.listJSON())
		}
		var remote []map[string]any
		if err := json.Unmarshal([]byte(alpha.mustKM("-H", "root@beta", "list", "--json")), &remote); err != nil {
			t.Fatal(err)
		}
		if len(remote) != 1 || remote[0]["id"] != "remote-1" || remote[0]["active_state"] != "active" {
			t.Errorf("list --json on beta from alpha: %v", remote)
		}
		if r := alpha.km("--host", "beta", "status"); r.code != 0 || !strings.Contains(r.stdout, "remote-1") {
			t.Errorf("status on beta: %s", r)
		}
		// The remote's exit status and message come back: 2 for a usage
		// error there.
		if r := alpha.km("--host", "beta", "stop", "no-such"); r.code != 2 || !strings.Contains(r.stderr, "no-such") {
			t.Errorf("stop of an unknown instance on beta: %s", r)
		}
		alpha.mustKM("--host", "beta", "stop", "remote-1")
		if len(beta.listJSON()) != 0 {
			t.Errorf("beta still has %v", beta.listJSON())
		}
		if s := beta.activeState("kato@remote-1.service"); s != "inactive" {
			t.Errorf("kato@remote-1.service on beta is %s after stop", s)
		}
	})

	t.Run("list and status over two hosts", func(t *testing.T) {
		alpha.t, beta.t = t, t
		alpha.mustKM("start", "--id", "here", "--port", "8021")
		beta.mustKM("start", "--id", "there", "--port", "8022")
		defer alpha.mustKM("stop", "--all", "--no-mongo")
		defer beta.mustKM("stop", "--all", "--no-mongo")

		out := alpha.mustKM("list", "--host", "alpha,beta")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST") ||
			!strings.HasPrefix(lines[1], "alpha") || !strings.Contains(lines[1], "here") || !strings.Contains(lines[1], "running") ||
			!strings.HasPrefix(lines[2], "beta") || !strings.Contains(lines[2], "there") || !strings.Contains(lines[2], "running") {
			t.Errorf("merged list:\n%s", out)
		}
		var all []map[string]any
		if err := json.Unmarshal([]byte(alpha.mustKM("status", "--json", "--host", "alpha,beta")), &all); err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0]["host"] != "alpha" || all[1]["host"] != "beta" || all[1]["systemd_reachable"] != true {
			t.Errorf("merged status: %v", all)
		}

		// A host whose key alpha does not know is refused (BatchMode, no
		// prompt), reported, and the others' rows still print.
		r := alpha.km("list", "--host", "beta,10.77.0.2")
		if r.code != 1 || !strings.Contains(r.stderr, "host 10.77.0.2") || !strings.Contains(r.stderr, "Host key verification failed") {
			t.Errorf("list with a host of unknown key: %s", r)
		}
		if !strings.Contains(r.stdout, "\nbeta ") || strings.Contains(r.stdout, "alpha") {
			t.Errorf("list with a host of unknown key printed:\n%s", r.stdout)
		}
	})

	t.Run("apply a file whose entries name hosts", func(t *testing.T) {
		alpha.t, beta.t = t, t
		defer alpha.mustKM("stop", "--all", "--no-mongo")
		defer beta.mustKM("stop", "--all", "--no-mongo")
		fleet := `instances:
  - id: fleet-here
    port: 8031
  - id: fleet-there
    host: beta
    port: 8031
    max_predictions: 7
`
		if err := alpha.WriteFile("/root/fleet.yaml", []byte(fleet), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := alpha.km("diff", "-f", "/root/fleet.yaml"); r.code != 1 || !strings.Contains(r.stdout, "+ fleet-here") || !strings.Contains(r.stdout, "beta: + fleet-there") {
			t.Fatalf("diff before apply: %s", r)
		}
		if r := alpha.km("apply", "-f", "/root/fleet.yaml"); r.code != 0 || !strings.Contains(r.stdout, "beta: ") {
			t.Fatalf("apply: %s", r)
		}
		if s := alpha.activeState("kato@fleet-here.service"); s != "active" {
			t.Errorf("kato@fleet-here.service on alpha is %s", s)
		}
		if s := beta.activeState("kato@fleet-there.service"); s != "active" {
			t.Errorf("kato@fleet-there.service on beta is %s", s)
		}
		if _, ok := alpha.listJSON()["fleet-there"]; ok {
			t.Error("alpha registered beta's entry")
		}
		if _, ok := beta.listJSON()["fleet-here"]; ok {
			t.Error("beta registered alpha's entry")
		}
		if r := alpha.km("diff", "-f", "/root/fleet.yaml"); r.code != 0 {
			t.Errorf("diff after apply: %s", r)
		}
		if r := alpha.km("apply", "-f", "/root/fleet.yaml"); r.code != 0 || !strings.Contains(r.stdout, "beta: nothing to do") {
			t.Errorf("a second apply: %s", r)
		}
		// beta refuses its entry (a processor its kato.toml lacks): nothing
		// changes on either host, and beta's error names the file's line.
		bad := fleet + `  - id: fleet-new
    port: 8032
  - id: fleet-bad
    host: beta
    processor: nosuch
`
		if err := alpha.WriteFile("/root/fleet.yaml", []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		r := alpha.km("apply", "-f", "/root/fleet.yaml")
		if r.code != 2 || !strings.Contains(r.stderr, "beta: ") || !strings.Contains(r.stderr, "/root/fleet.yaml:12") || !strings.Contains(r.stderr, "nosuch") {
			t.Errorf("apply with an entry beta refuses: %s", r)
		}
		if _, ok := alpha.listJSON()["fleet-new"]; ok {
			t.Error("alpha applied its entry although beta refused the file")
		}
	})
}
