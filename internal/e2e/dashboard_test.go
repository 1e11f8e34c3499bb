package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/sys/unix"
)

// dashboardToken is the token the tests put in serve's token file.
const dashboardToken = "e2e-dashboard-token-0123456789abcdef"

// dashboardAuth is the header that sends it.
const dashboardAuth = "Authorization: Bearer " + dashboardToken

// getWithToken is a GET inside the machine with serve's token.
func (m *machine) getWithToken(url string) (string, error) {
	r := m.exec("curl", "-sS", "--max-time", "5", "-f", "-H", dashboardAuth, url)
	if r.code != 0 {
		return "", fmt.Errorf("GET %s: %s", url, r)
	}
	return r.stdout, nil
}

// forwardToMachine listens on the host's loopback and forwards each
// connection to addr inside the machine's network namespace, so that a
// browser on the host reaches serve, which listens on the machine's own
// loopback. It returns the host address.
func (m *machine) forwardToMachine(addr string) string {
	m.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { ln.Close() })
	netns := fmt.Sprintf("/proc/%d/ns/net", m.PID())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				inner, err := dialInNetns(netns, addr)
				if err != nil {
					return
				}
				defer inner.Close()
				go io.Copy(inner, c)
				io.Copy(c, inner)
			}()
		}
	}()
	return ln.Addr().String()
}

// dialInNetns dials addr from inside the network namespace at path: the
// socket is made on a thread moved into it, which is then thrown away.
func dialInNetns(path, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// startServe runs `kato-manager serve` in the machine with a token file
// and the extra flags.
func (p *kgPool) startServe(flags ...string) {
	p.t.Helper()
	if err := p.WriteFile("/etc/kato/serve.token", []byte(dashboardToken+"\n"), 0o600); err != nil {
		p.t.Fatal(err)
	}
	p.must(append([]string{"systemd-run", "--unit=kato-manager-serve", "--", katoManager, "serve", "--listen", "127.0.0.1:9090"}, flags...)...)
	p.waitFor("kato-manager serve", 10*time.Second, func() bool {
		_, err := p.getWithToken("http://127.0.0.1:9090/health")
		return err == nil || strings.Contains(err.Error(), "503")
	})
}

// curlCode runs curl in the machine and returns the HTTP status.
func (p *kgPool) curlCode(args ...string) string {
	p.t.Helper()
	return strings.TrimSpace(p.exec(append([]string{"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"}, args...)...).stdout)
}

// TestDashboardActionsNeedTheToken: without the token every read (pages,
// the instance's journal lines, documents, /health, /stats, /metrics)
// answers 401 and every action 401 (403 with a session but no CSRF token is
// covered by the unit tests) and changes nothing; a Host naming another
// server is refused with 421; with the token, the CLI's actions work over
// HTTP and bad input is a 400 naming field, value and rule.
func TestDashboardActionsNeedTheToken(t *testing.T) {
	p := bootKGPool(t, "", 0)
	p.mustKM("start", "--id", "alpha", "--name", "Alpha", "--port", "8001")
	p.addContent(1, 3)
	p.enqueue(1, 3)
	p.startServe()
	const base = "http://127.0.0.1:9090"
	for _, path := range []string{"/", "/instances/alpha", "/documents", "/documents/1", "/health", "/stats", "/metrics"} {
		if code := p.curlCode(base + path); code != "401" {
			t.Errorf("GET %s without the token: HTTP %s, want 401", path, code)
		}
		// /health says 503 here: no worker runs.
		if code := p.curlCode("-H", dashboardAuth, base+path); code != "200" && !(path == "/health" && code == "503") {
			t.Errorf("GET %s with the token: HTTP %s, want 200", path, code)
		}
		if code := p.curlCode("-H", dashboardAuth, "-H", "Host: rebound.example:9090", base+path); code != "421" {
			t.Errorf("GET %s with the token through another name: HTTP %s, want 421", path, code)
		}
	}
	for _, action := range []string{"stop", "restart", "scale", "retry", "requeue", "priority", "delete", "clear", "start", "requeue-all"} {
		if code := p.curlCode("-X", "POST", "-d", "id=alpha&item=1&workers=2&status=pending&content_id=1&priority=3&confirm=yes", base+"/actions/"+action); code != "401" {
			t.Errorf("%s without a token: HTTP %s, want 401", action, code)
		}
		if code := p.curlCode("-X", "POST", "-H", "Authorization: Bearer wrong-token-wrong-token", "-d", "id=alpha&confirm=yes", base+"/actions/"+action); code != "401" {
			t.Errorf("%s with a wrong token: HTTP %s, want 401", action, code)
		}
	}
	if s := p.activeState("kato@alpha.service"); s != "active" {
		t.Errorf("alpha is %s after refused actions", s)
	}
	if c := p.counts(); c.Pending != 3 || c.Total != 3 {
		t.Errorf("refused actions changed the queue: %+v", c)
	}
	if p.exists("/etc/systemd/system/kg-workers.target.wants/kg-worker@1.service") {
		t.Error("a refused scale started workers")
	}
	auth := dashboardAuth
	for _, c := range []struct{ action, form, want string }{
		{"priority", "item=1&priority=-1", "invalid priority -1: must be a whole number, zero or more"},
		{"priority", "item=99&priority=2", "invalid ITEM_ID 99: no such queue item"},
		{"priority", "item=x&priority=2", "invalid item x: must be a positive whole number"},
		{"delete", "item=99&confirm=yes", "invalid ITEM_ID 99: no such queue item"},
		{"requeue", "content_id=70", "invalid CONTENT_ID 70: has no queue item"},
		{"clear", "status=processing&confirm=yes", "invalid status processing"},
		{"stop", "id=nope&confirm=yes", "nope"},
		{"restart", "id=nope&confirm=yes", "nope"},
		{"scale", "workers=0&confirm=yes", "invalid workers 0: must be between 1 and 64"},
		{"start", "id=bad+id", `invalid id "bad id"`},
		{"start", "id=omega&port=99999", "invalid port 99999: must be between 1 and 65535"},
		{"start", "id=omega&processor=nope", "invalid processor nope: must name a processor of kato.toml"},
		{"requeue-all", "priority=-1&confirm=yes", "invalid priority -1: must be a whole number, zero or more"},
	} {
		r := p.exec("curl", "-s", "-w", "\n%{http_code}", "--max-time", "10", "-X", "POST", "-H", auth, "-d", c.form, base+"/actions/"+c.action)
		if !strings.HasSuffix(strings.TrimSpace(r.stdout), "400") || !strings.Contains(r.stdout, c.want) {
			t.Errorf("%s %s: %q, want 400 and %q", c.action, c.form, r.stdout, c.want)
		}
	}
	if c := p.counts(); c.Pending != 3 || c.Total != 3 {
		t.Errorf("bad input changed the queue: %+v", c)
	}
	if _, ok := p.listJSON()["omega"]; ok || p.exists("/etc/kato/instances/omega.env") {
		t.Error("a refused start registered omega or wrote its files")
	}
	r := p.exec("curl", "-s", "-w", "\n%{http_code}", "--max-time", "10", "-X", "POST", "-H", auth, "-d", "item=2&priority=7", base+"/actions/priority")
	if !strings.Contains(r.stdout, "1 item(s) now at priority 7") {
		t.Errorf("priority with the token: %q", r.stdout)
	}
	if n := p.queryInt("SELECT priority FROM kg_processing_queue WHERE id = 2"); n != 7 {
		t.Errorf("item 2 has priority %d", n)
	}
	if r := p.exec("curl", "-s", "--max-time", "10", "-X", "POST", "-H", auth, "-d", "status=pending&confirm=yes", base+"/actions/clear"); !strings.Contains(r.stdout, "3 pending item(s) deleted") {
		t.Errorf("clear with the token: %q", r.stdout)
	}
	// Without JavaScript a destructive action asks on a page of its own
	// first, and does nothing until confirmed.
	if r := p.exec("curl", "-s", "--max-time", "10", "-X", "POST", "-H", auth, "-H", "Accept: text/html", "-d", "id=alpha", base+"/actions/stop"); !strings.Contains(r.stdout, "Are you sure?") || !strings.Contains(r.stdout, `name="confirm" value="yes"`) {
		t.Errorf("stop without confirmation: %q", r.stdout)
	}
	if s := p.activeState("kato@alpha.service"); s != "active" {
		t.Errorf("alpha is %s after an unconfirmed stop", s)
	}
	// GET on an action is refused whatever the credentials.
	if code := p.curlCode("-H", auth, base+"/actions/stop?id=alpha"); code != "405" {
		t.Errorf("GET /actions/stop: HTTP %s, want 405", code)
	}
}

// TestDashboardInBrowser: Debian's chromium, headless, is refused the
// dashboard under a name that resolves to serve's address but is not
// serve's (DNS rebinding) and shown only the login form before it logs in;
// logged in, the dashboard served on the real systemd shows the
// instances, the workers and the queue and no message a link brings
// (?notice=); a click on an instance's Stop, confirmed
// in the browser's dialog, stops its unit, the start form starts one (and
// refuses bad input, shown on the page), and Requeue all, confirmed,
// queues every document done again. Screenshots go to the test's
// artifact directory (go test -artifacts); with KATO_UPDATE_SCREENSHOT set
// to a path, the first one is also written there (docs/dashboard.png).
func TestDashboardInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (packaging/deps.sh test installs it)")
		}
		t.Skip("chromium is not installed")
	}
	p := bootKGPool(t, "poll_interval = 1.0\nbatch_size = 2\nconcurrency = 1\n", 300)
	p.mustKM("start", "--id", "alpha", "--name", "Alpha", "--port", "8001")
	p.mustKM("start", "--id", "beta", "--name", "Beta", "--port", "8002")
	// serve samples the queue every second while work arrives and drains,
	// so that the plots have a course to show.
	p.startServe("--sample-interval", "1s")
	p.addContent(1, 12)
	time.Sleep(2 * time.Second)
	p.enqueue(1, 12)
	time.Sleep(3 * time.Second)
	p.startWorkers(2)
	p.waitDrained(time.Minute)
	time.Sleep(3 * time.Second)
	host := p.forwardToMachine("127.0.0.1:9090")
	base := "http://" + host

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		// A name of an attacker's that resolves to serve's address.
		chromedp.Flag("host-resolver-rules", "MAP rebound.example 127.0.0.1"),
		chromedp.WindowSize(1400, 1100),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	// The workers publish their counters about once a second.
	p.waitFor("the workers' reports", 20*time.Second, func() bool { return p.stats().TotalProcessed >= 12 })
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	_, port, _ := net.SplitHostPort(host)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://rebound.example:"+port+"/"), chromedp.WaitVisible(chromedp.CSS("body"))); err != nil {
		t.Fatalf("load the dashboard under another name: %v", err)
	}
	if body := text("body"); !strings.Contains(body, `invalid Host "rebound.example:`+port+`": is not a name of this server`) {
		t.Errorf("the dashboard under another name:\n%s", body)
	}
	// Without the token, the login form and nothing of the fleet.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`))); err != nil {
		t.Fatalf("load the dashboard: %v", err)
	}
	if body := text("body"); strings.Contains(body, "Alpha") || strings.Contains(body, "beta") {
		t.Errorf("the page before the login shows the fleet:\n%s", body)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), dashboardToken),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/logout"]`)),
		chromedp.Navigate(base+"/?status=completed&notice=Session+expired%3A+log+in+at+evil.example"),
		chromedp.WaitVisible(chromedp.CSS(`#instances tr[data-id="beta"]`)),
	); err != nil {
		t.Fatalf("log in and load the dashboard: %v", err)
	}
	if body := text("body"); strings.Contains(body, "evil.example") {
		t.Errorf("the dashboard shows the text of its link:\n%s", body)
	}
	// Where JavaScript runs, the page refreshes itself.
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS("#live[data-refreshed]"))); err != nil {
		t.Fatalf("no live refresh: %v", err)
	}
	instances := text("#instances")
	for _, want := range []string{"alpha", "Alpha", "beta", "Beta", "running", "8001", "8002", "default"} {
		if !strings.Contains(instances, want) {
			t.Errorf("the instances table lacks %q:\n%s", want, instances)
		}
	}
	if w := text("#workers"); !strings.Contains(w, "active/running") {
		t.Errorf("the workers table:\n%s", w)
	}
	counts := text("#counts")
	c := p.counts()
	if want := fmt.Sprintf("completed %d", c.Completed); !strings.Contains(counts, want) {
		t.Errorf("queue counts %q, want %q (database: %+v)", counts, want, c)
	}
	if items := text("#items"); !strings.Contains(items, "completed") {
		t.Errorf("the completed items:\n%s", items)
	}
	// The depth plot has climbed to the twelve items and come down.
	points, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.plot polyline")[0].getAttribute("points").split(" ").length`))
	if err != nil || points < 5 {
		t.Errorf("the depth plot has %d points (%v)", points, err)
	}
	if fig := text("figure"); !strings.Contains(fig, "Queue depth") {
		t.Errorf("first plot: %q", fig)
	}
	if top, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("svg.plot text"))); err != nil || top != "12" {
		t.Errorf("the depth plot's top is %q (%v), want 12", top, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveShot(t, "dashboard.png", shot)
	if dst := os.Getenv("KATO_UPDATE_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	// Stop beta, confirmed in the browser's dialog.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#stop-beta")),
		chromedp.Click(chromedp.CSS("#stop-beta")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	); err != nil {
		t.Fatalf("stop beta: %v", err)
	}
	if n := text(".notice"); !strings.Contains(n, "stopped beta") {
		t.Errorf("notice %q", n)
	}
	if s := p.activeState("kato@beta.service"); s != "inactive" {
		t.Errorf("beta is %s after the stop", s)
	}
	if _, ok := p.listJSON()["beta"]; ok {
		t.Error("beta is still registered")
	}
	if s := p.activeState("kato@alpha.service"); s != "active" {
		t.Errorf("alpha is %s", s)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#instances tr[data-id="alpha"]`))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text("#instances"), "beta") {
		t.Error("the dashboard still lists beta")
	}
	shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveShot(t, "dashboard-after-stop.png", shot)

	// The start form: bad input is shown on the page and starts nothing;
	// good input starts the instance through start's code, its unit
	// active on systemd with the parameters given.
	fillStart := func(fields map[string]string) {
		t.Helper()
		actions := []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(base + "/"),
			chromedp.WaitVisible(chromedp.CSS("#start-instance summary")),
			chromedp.Click(chromedp.CSS("#start-instance summary")),
			chromedp.WaitVisible(chromedp.CSS(`#start-instance input[name="id"]`)),
			chromedp.Click(chromedp.CSS("#start-instance details summary")),
		}
		for name, value := range fields {
			actions = append(actions, chromedp.SendKeys(chromedp.CSS(`#start-instance input[name="`+name+`"]`), value))
		}
		actions = append(actions, chromedp.Click(chromedp.CSS("#start-submit")))
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("fill in the start form %v: %v", fields, err)
		}
	}
	fillStart(map[string]string{"id": "gamma", "port": "8003", "persistence": "0"})
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(".error"))); err != nil {
		t.Fatalf("no error for a bad persistence: %v", err)
	}
	if e := text(".error"); !strings.Contains(e, "invalid --persistence 0: must be between 1 and 100000") {
		t.Errorf("the start form's error: %q", e)
	}
	if _, ok := p.listJSON()["gamma"]; ok || p.activeState("kato@gamma.service") == "active" {
		t.Fatal("a refused start form registered or started gamma")
	}
	fillStart(map[string]string{"id": "gamma", "name": "Gamma", "port": "8003", "persistence": "7"})
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(".notice"))); err != nil {
		t.Fatalf("no notice after starting gamma: %v (%s)", err, text("body"))
	}
	if n := text(".notice"); !strings.Contains(n, "started gamma (Gamma): kato@gamma.service, API port 8003") {
		t.Errorf("notice %q", n)
	}
	if s := p.activeState("kato@gamma.service"); s != "active" {
		t.Errorf("gamma is %s after the start form", s)
	}
	gamma := p.listJSON()["gamma"]
	if params, _ := gamma["parameters"].(map[string]any); gamma == nil || gamma["api_port"] != float64(8003) || params["persistence"] != float64(7) {
		t.Errorf("gamma as registered: %v", gamma)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#instances tr[data-id="gamma"]`))); err != nil {
		t.Errorf("the dashboard does not list gamma: %v", err)
	}

	// Requeue all, confirmed in the browser's dialog: every document done
	// goes back to the queue, and the workers take them again.
	// From a fresh page: on the page gamma's start left, the wait below
	// would find that start's notice before the requeue's page loads.
	done := p.counts().Completed
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#requeue-all")),
		chromedp.Click(chromedp.CSS("#requeue-all")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
	); err != nil {
		t.Fatalf("requeue all: %v", err)
	}
	if n := text(".notice"); !strings.Contains(n, fmt.Sprintf("%d document(s) queued again", done)) {
		t.Errorf("requeue all: notice %q, want %d documents", n, done)
	}
	p.waitDrained(time.Minute)
	if c := p.counts(); c.Completed != done || c.Total != done {
		t.Errorf("after requeue all and the workers: %+v, want %d completed", c, done)
	}

	// A document's detail view shows its entities and relationships.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/documents?q=Document+3"), chromedp.WaitVisible(chromedp.CSS("#documents"))); err != nil {
		t.Fatal(err)
	}
	if d := text("#documents"); !strings.Contains(d, "https://example.com/docs/3") {
		t.Errorf("search for Document 3:\n%s", d)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/documents/3"), chromedp.WaitVisible(chromedp.CSS("#entities"))); err != nil {
		t.Fatal(err)
	}
	if e := text("#entities"); !strings.Contains(e, "Document 3") {
		t.Errorf("entities of document 3:\n%s", e)
	}
	if r := text("#relationships"); strings.Contains(r, "none") {
		t.Errorf("relationships of document 3:\n%s", r)
	}
}

func saveShot(t *testing.T, name string, png []byte) {
	t.Helper()
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// TestManagerService: kato-manager.service, installed disabled by
// install-units, runs serve under its hardening when started, with no
// capability but dac_read_search and sys_ptrace: the dashboard and
// /metrics answer, and actions with the token (an instance stopped and one
// started, a queue item's priority changed) work. Its queue work, and root's
// queue commands', is done by kato-queue@.service instances, as kato and
// non-dumpable, through kato-queue.socket: serve starts no child.
func TestManagerService(t *testing.T) {
	p := bootKGPool(t, "", 0)
	if s := strings.TrimSpace(p.exec("systemctl", "is-enabled", "kato-manager.service").stdout); s != "disabled" {
		t.Fatalf("kato-manager.service is %q after install-units, want disabled", s)
	}
	if out := p.must("systemctl", "cat", "kato-manager.service"); !strings.Contains(out, "WantedBy=multi-user.target") || !strings.Contains(out, "ProtectSystem=strict") {
		t.Errorf("kato-manager.service:\n%s", out)
	}
	// The unit runs the binary that installed it, a source install's.
	if out := p.must("systemctl", "show", "-P", "ExecStart", "kato-manager.service"); !strings.Contains(out, "path="+katoManager+" ;") {
		t.Errorf("kato-manager.service does not run %s: %s", katoManager, out)
	}
	if err := p.WriteFile("/etc/kato/serve.token", []byte(dashboardToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.mustKM("start", "--id", "alpha", "--name", "Alpha", "--port", "8001")
	p.addContent(1, 3)
	p.enqueue(1, 2)
	p.must("systemctl", "start", "kato-manager.service")
	const base = "http://127.0.0.1:9090"
	p.waitFor("kato-manager.service to answer", 15*time.Second, func() bool {
		_, err := p.getWithToken(base + "/metrics")
		return err == nil
	})
	servePID := p.mainPID("kato-manager.service")
	// CAP_DAC_READ_SEARCH (2) and CAP_SYS_PTRACE (19), nothing else.
	if st := p.must("cat", "/proc/"+servePID+"/status"); !strings.Contains(st, "\nCapBnd:\t0000000000080004\n") {
		t.Errorf("serve's capabilities:\n%s", st)
	}
	metrics, _ := p.getWithToken(base + "/metrics")
	if children := strings.TrimSpace(p.exec("pgrep", "-P", servePID).stdout); children != "" {
		t.Errorf("serve has child processes %s: %s", children, p.exec("ps", "-o", "pid,user,args", "--ppid", servePID).stdout)
	}
	katoUID := strings.TrimSpace(p.must("id", "-u", "kato"))
	helpers := strings.Fields(p.must("systemctl", "list-units", "--plain", "--no-legend", "--state=active", "kato-queue@*.service"))
	var helperUnits []string
	for _, f := range helpers {
		if strings.HasPrefix(f, "kato-queue@") {
			helperUnits = append(helperUnits, f)
		}
	}
	if len(helperUnits) == 0 {
		t.Errorf("no kato-queue@ instance does serve's queue work:\n%s", p.exec("systemctl", "list-units", "--all", "kato-queue*").stdout)
	}
	for _, u := range helperUnits {
		pid := p.mainPID(u)
		if uid := p.uid(u); uid != katoUID {
			t.Errorf("%s runs as uid %s, want kato's %s", u, uid, katoUID)
		}
		// Not dumpable: its /proc files are root's, not kato's.
		if owner := strings.TrimSpace(p.must("stat", "-c", "%u", "/proc/"+pid+"/mem")); owner != "0" {
			t.Errorf("%s's /proc/%s/mem belongs to uid %s: the helper is dumpable", u, pid, owner)
		}
	}
	// Root's queue commands go through the socket too, each on a
	// connection of its own.
	accepted := func() int {
		n, err := strconv.Atoi(strings.TrimSpace(p.must("systemctl", "show", "-P", "NAccepted", "kato-queue.socket")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, args := range [][]string{{"queue", "enqueue", "3"}, {"queue", "list"}, {"workers", "stats"}} {
		before := accepted()
		out := p.mustKM(args...)
		if args[1] == "list" && !strings.Contains(out, "pending") {
			t.Errorf("queue list through the socket:\n%s", out)
		}
		if after := accepted(); after != before+1 {
			t.Errorf("%q: kato-queue.socket accepted %d connections, want 1", args, after-before)
		}
	}
	// Ready: serve sees the processor's own process, of the instance's own
	// user, listen on its port (/proc/PID/fd: dac_read_search and
	// sys_ptrace).
	if !strings.Contains(metrics, `kato_instance_ready{group="",id="alpha",name="Alpha",processor="default"} 1`) {
		t.Errorf("alpha is not ready in /metrics under the unit:\n%s", metrics)
	}
	if !strings.Contains(metrics, `kato_instance_up{group="",id="alpha",name="Alpha",processor="default"} 1`) || !strings.Contains(metrics, `kg_queue_items{status="pending"} 2`) {
		t.Errorf("/metrics under the unit:\n%s", metrics)
	}
	if page, err := p.getWithToken(base + "/"); err != nil || !strings.Contains(page, `data-id="alpha"`) {
		t.Errorf("dashboard under the unit: %v\n%s", err, page)
	}
	auth := dashboardAuth
	if r := p.exec("curl", "-s", "--max-time", "10", "-X", "POST", "-H", auth, "-d", "item=1&priority=4", base+"/actions/priority"); !strings.Contains(r.stdout, "1 item(s) now at priority 4") {
		t.Errorf("priority under the unit: %s", r)
	}
	if r := p.exec("curl", "-s", "--max-time", "30", "-X", "POST", "-H", auth, "-d", "id=alpha&confirm=yes", base+"/actions/stop"); !strings.Contains(r.stdout, "stopped alpha") {
		t.Errorf("stop under the unit: %s\n%s", r, p.exec("journalctl", "-u", "kato-manager.service", "--no-pager", "-n", "30").stdout)
	}
	if s := p.activeState("kato@alpha.service"); s != "inactive" {
		t.Errorf("alpha is %s after the stop", s)
	}
	if _, ok := p.listJSON()["alpha"]; ok {
		t.Error("alpha is still registered")
	}
	// A start from the form works under the unit's hardening too.
	if r := p.exec("curl", "-s", "--max-time", "60", "-X", "POST", "-H", auth, "-d", "id=delta&port=8004", base+"/actions/start"); !strings.Contains(r.stdout, "started delta") {
		t.Errorf("start under the unit: %s\n%s", r, p.exec("journalctl", "-u", "kato-manager.service", "--no-pager", "-n", "30").stdout)
	}
	if s := p.activeState("kato@delta.service"); s != "active" {
		t.Errorf("delta is %s after the start", s)
	}
	if n := p.queryInt("SELECT priority FROM kg_processing_queue WHERE id = 1"); n != 4 {
		t.Errorf("item 1 has priority %d", n)
	}
	// Under the hardening too serve follows systemd's signals.
	if log := p.must("journalctl", "-u", "kato-manager.service", "--no-pager", "-o", "cat"); strings.Contains(log, "watch units") {
		t.Errorf("kato-manager.service lost its watch of the units:\n%s", log)
	}
}

// TestServeTLSFromCredentials: off loopback, serve without TLS does not
// start (exit 2, naming --listen and the rule); kato-manager.service with
// a drop-in that hands it the certificate and key as systemd credentials
// (LoadCredential=) and another --listen answers HTTPS only, under the
// unit's hardening: the session cookie is Secure, and a Host naming
// another server is refused.
func TestServeTLSFromCredentials(t *testing.T) {
	p := bootKGPool(t, "", 0)
	if err := p.WriteFile("/etc/kato/serve.token", []byte(dashboardToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := p.km("serve", "--listen", "0.0.0.0:9443"); r.code != 2 ||
		!strings.Contains(r.stderr, "invalid --listen 0.0.0.0:9443: is not a loopback address: plain HTTP is refused there; give --tls-cert and --tls-key, or the systemd credentials tls-cert and tls-key") {
		t.Errorf("serve off loopback without TLS: %s", r)
	}
	certPEM, keyPEM := testCertificate(t, "dash.example")
	p.must("install", "-d", "-m", "0700", "/etc/kato/tls")
	for path, data := range map[string][]byte{"/etc/kato/tls/cert.pem": certPEM, "/etc/kato/tls/key.pem": keyPEM, "/tmp/ca.pem": certPEM} {
		if err := p.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The drop-in an operator writes to serve off loopback.
	p.must("ln", "-sf", katoManager, "/usr/bin/kato-manager")
	p.must("mkdir", "-p", "/etc/systemd/system/kato-manager.service.d")
	dropIn := "[Service]\nLoadCredential=tls-cert:/etc/kato/tls/cert.pem\nLoadCredential=tls-key:/etc/kato/tls/key.pem\n" +
		"ExecStart=\nExecStart=/usr/bin/kato-manager serve --listen 0.0.0.0:9443 --allow-host dash.example\n"
	if err := p.WriteFile("/etc/systemd/system/kato-manager.service.d/tls.conf", []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("systemctl", "daemon-reload")
	p.must("systemctl", "start", "kato-manager.service")
	const base = "https://dash.example:9443"
	tlsCurl := func(args ...string) string {
		return p.curlCode(append([]string{"--cacert", "/tmp/ca.pem", "--resolve", "dash.example:9443:127.0.0.1"}, args...)...)
	}
	p.waitFor("serve over TLS", 15*time.Second, func() bool {
		if s := p.activeState("kato-manager.service"); s != "active" && s != "activating" {
			t.Fatalf("serve over TLS is %s:\n%s", s, p.exec("journalctl", "-u", "kato-manager.service", "--no-pager", "-o", "cat").stdout)
		}
		return tlsCurl(base+"/static/style.css") == "200"
	})
	if code := tlsCurl("-H", dashboardAuth, base+"/stats"); code != "200" {
		t.Errorf("GET /stats over TLS with the token: HTTP %s", code)
	}
	if code := tlsCurl(base + "/stats"); code != "401" {
		t.Errorf("GET /stats over TLS without the token: HTTP %s, want 401", code)
	}
	if code := p.curlCode("http://127.0.0.1:9443/stats"); code == "200" || code == "401" {
		t.Errorf("plain HTTP on the TLS port: HTTP %s", code)
	}
	if code := p.curlCode("--cacert", "/tmp/ca.pem", "--resolve", "rebound.example:9443:127.0.0.1", "-k", "-H", dashboardAuth, "https://rebound.example:9443/stats"); code != "421" {
		t.Errorf("GET /stats over TLS through another name: HTTP %s, want 421", code)
	}
	r := p.exec("curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10", "--cacert", "/tmp/ca.pem", "--resolve", "dash.example:9443:127.0.0.1",
		"-d", "token="+dashboardToken, base+"/login")
	if h := strings.ToLower(r.stdout); !strings.Contains(h, "set-cookie: kato_session=") || !strings.Contains(h, "; secure") {
		t.Errorf("login over TLS: %s", r)
	}
	if log := p.must("journalctl", "-u", "kato-manager.service", "--no-pager", "-o", "cat"); !strings.Contains(log, "on https://") || !strings.Contains(log, "TLS certificate from the credentials tls-cert and tls-key") {
		t.Errorf("serve's journal:\n%s", log)
	}
}

// testCertificate makes a self-signed certificate for host and 127.0.0.1
// and its key, as PEM.
func testCertificate(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
