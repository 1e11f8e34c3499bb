package main

// The front rows: a group's HAProxy front (package front) on loopback before
// processor doubles, beside the same doubles reached straight and through
// nginx least_conn as KATO's own scaling guide configures it; and the
// requests a rolling restart fails beside a plain restart of every member.
// They need haproxy and nginx (packaging/deps.sh test), not systemd.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kato-manager/kato-manager/front"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
)

// frontFlags are the knobs of the front rows.
type frontFlags struct {
	duration *time.Duration
	clients  *int
}

// benchMember is a generation-B processor double on a loopback port.
type benchMember struct {
	bin, id, dir string
	port         int
	delay        time.Duration
	cmd          *exec.Cmd
}

func (m *benchMember) start() error {
	m.cmd = exec.Command(m.bin, "--generation", "b", "--delay", m.delay.String())
	m.cmd.Env = append(os.Environ(), "PROCESSOR_ID="+m.id, "PORT="+strconv.Itoa(m.port), "STATE_DIRECTORY="+m.dir)
	if err := m.cmd.Start(); err != nil {
		return err
	}
	return waitHTTP("http://127.0.0.1:"+strconv.Itoa(m.port)+"/health", 20*time.Second)
}

// stop is systemd's stop of generation B: SIGTERM, which it does not exit
// on, then SIGKILL.
func (m *benchMember) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(300 * time.Millisecond):
		m.cmd.Process.Kill()
		<-done
	}
}

func (m *benchMember) restart() error { m.stop(); return m.start() }

type benchMembers map[string]*benchMember

func (ms benchMembers) RestartMember(_ context.Context, id string) error { return ms[id].restart() }

func waitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %s", url, within)
}

func loopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// nginxConf is the nginx of KATO's scaling guide (docs/operations/scaling.md
// of the KATO repository): least_conn over the instances with max_fails=3
// fail_timeout=30s, keepalive 32 to them, HTTP/1.1 with the Connection
// header cleared, 60 s timeouts, buffering on.
func nginxConf(dir string, port int, members []*benchMember) string {
	var b strings.Builder
	fmt.Fprintf(&b, "daemon off;\nworker_processes 2;\npid %s/nginx.pid;\nerror_log %s/error.log;\n", dir, dir)
	b.WriteString("events { worker_connections 1024; }\nhttp {\n")
	fmt.Fprintf(&b, "  access_log off;\n  client_body_temp_path %s;\n  proxy_temp_path %s;\n", dir, dir)
	b.WriteString("  upstream kato_backend {\n    least_conn;\n")
	for _, m := range members {
		fmt.Fprintf(&b, "    server 127.0.0.1:%d max_fails=3 fail_timeout=30s;\n", m.port)
	}
	b.WriteString("    keepalive 32;\n  }\n")
	fmt.Fprintf(&b, "  server {\n    listen 127.0.0.1:%d;\n    location / {\n", port)
	b.WriteString("      proxy_pass http://kato_backend;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n")
	b.WriteString("      proxy_connect_timeout 60s;\n      proxy_send_timeout 60s;\n      proxy_read_timeout 60s;\n")
	b.WriteString("      proxy_buffering on;\n      proxy_buffer_size 4k;\n      proxy_buffers 8 4k;\n    }\n  }\n}\n")
	return b.String()
}

// throughput is what a closed-loop load saw.
type throughput struct {
	rate     float64
	p50, p99 time.Duration
	failed   int
}

func (t throughput) String() string {
	return fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, %d failed", t.rate, round(t.p50), round(t.p99), t.failed)
}

// closedLoad sends POST /observe from clients keep-alive clients, each
// waiting for its answer, for d.
func closedLoad(port, clients int, d time.Duration) throughput {
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			var mine []time.Duration
			for time.Now().Before(stop) {
				t0 := time.Now()
				if err := observe(client, port); err != nil {
					failed.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return throughput{failed: int(failed.Load())}
	}
	return throughput{rate: float64(len(lat)) / d.Seconds(), p50: percentile(lat, 50), p99: percentile(lat, 99), failed: int(failed.Load())}
}

func observe(client *http.Client, port int) error {
	resp, err := client.Post("http://127.0.0.1:"+strconv.Itoa(port)+"/observe", "application/json",
		strings.NewReader(`{"strings": ["a"], "vectors": [], "emotives": {}}`))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// steadyLoad sends POST /observe every 10 ms from 4 clients until stop is
// closed, and counts the failures.
func steadyLoad(port int, stop <-chan struct{}) (sent, failed *atomic.Int64, done *sync.WaitGroup) {
	sent, failed, done = &atomic.Int64{}, &atomic.Int64{}, &sync.WaitGroup{}
	for range 4 {
		done.Add(1)
		go func() {
			defer done.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				sent.Add(1)
				if observe(client, port) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	return sent, failed, done
}

// frontRows measures the front; it returns no row, and a note, where
// HAProxy or nginx is missing.
func frontRows(ctx context.Context, f frontFlags) ([]row, []string, error) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		haproxy = "/usr/sbin/haproxy"
	}
	nginx, nerr := exec.LookPath("nginx")
	if nerr != nil {
		nginx = "/usr/sbin/nginx"
	}
	for _, bin := range []string{haproxy, nginx} {
		if _, err := os.Stat(bin); err != nil {
			return nil, []string{"front rows left out: " + bin + " is not installed (packaging/deps.sh test)"}, nil
		}
	}
	dir, err := os.MkdirTemp("", "kato-bench-front-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	bins, err := testbed.Build()
	if err != nil {
		return nil, nil, err
	}
	ms := benchMembers{}
	var members []*benchMember
	g := front.Group{Name: "bench", Address: "127.0.0.1", Balance: front.LeastConn, CheckInterval: 100 * time.Millisecond,
		Ready: front.ReadyCheck{Path: "/health", Body: front.HealthyBody}}
	for _, id := range []string{"m1", "m2", "m3"} {
		port, err := loopbackPort()
		if err != nil {
			return nil, nil, err
		}
		m := &benchMember{bin: filepath.Join(bins, "fakeprocessor"), id: id, dir: filepath.Join(dir, id), port: port}
		if err := os.Mkdir(m.dir, 0o700); err != nil {
			return nil, nil, err
		}
		if err := m.start(); err != nil {
			return nil, nil, err
		}
		defer m.stop()
		ms[id], members = m, append(members, m)
		g.Members = append(g.Members, front.Member{ID: id, Address: "127.0.0.1", Port: port})
	}
	if g.Port, err = loopbackPort(); err != nil {
		return nil, nil, err
	}
	socket := filepath.Join(dir, "admin.sock")
	cfg, err := front.Render(g, socket)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "front.cfg"), cfg, 0o600); err != nil {
		return nil, nil, err
	}
	hp := exec.Command(haproxy, "-W", "-db", "-f", filepath.Join(dir, "front.cfg"))
	if err := hp.Start(); err != nil {
		return nil, nil, err
	}
	defer func() { hp.Process.Signal(syscall.SIGTERM); hp.Wait() }()
	nginxPort, err := loopbackPort()
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxConf(dir, nginxPort, members)), 0o600); err != nil {
		return nil, nil, err
	}
	ng := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	if err := ng.Start(); err != nil {
		return nil, nil, err
	}
	defer func() { ng.Process.Signal(syscall.SIGQUIT); ng.Wait() }()
	client := front.NewClient(socket)
	if err := waitUp(ctx, client, len(g.Members)); err != nil {
		return nil, nil, err
	}
	if err := waitHTTP("http://127.0.0.1:"+strconv.Itoa(nginxPort)+"/health", 10*time.Second); err != nil {
		return nil, nil, err
	}

	d, clients := *f.duration, *f.clients
	closedLoad(g.Port, clients, time.Second) // warm-up, not counted
	direct := closedLoad(members[0].port, clients, d)
	through := closedLoad(g.Port, clients, d)
	viaNginx := closedLoad(nginxPort, clients, d)
	rows := []row{
		{what: fmt.Sprintf("%d clients, POST /observe, %s", clients, d), oursName: "front (HAProxy, 3 members)", base: "straight to one member",
			ours: through.String(), baseline: direct.String(), ratio: through.rate / direct.rate, ratioIs: "front/straight req/s"},
		{what: fmt.Sprintf("%d clients, POST /observe, %s", clients, d), oursName: "front (HAProxy, 3 members)", base: "nginx least_conn (KATO's guide)",
			ours: through.String(), baseline: viaNginx.String(), ratio: through.rate / viaNginx.rate, ratioIs: "front/nginx req/s"},
	}
	notes := []string{fmt.Sprintf("front p99 added over straight: %s (goal <= 1ms); HAProxy %s", round(through.p99-direct.p99), haproxyVersion(haproxy))}

	// Rolling against plain restart, members listening 2.5 s after exec as
	// the real processor takes 1.4-2.1 s.
	for _, m := range members {
		m.delay = 2500 * time.Millisecond
	}
	stop := make(chan struct{})
	sent, failed, done := steadyLoad(g.Port, stop)
	start := time.Now()
	_, rollErr := front.Roll(ctx, g, client, ms, front.RollOptions{DrainTimeout: 10 * time.Second, ReadyTimeout: 30 * time.Second, Poll: 20 * time.Millisecond})
	rollTime := time.Since(start)
	close(stop)
	done.Wait()
	if rollErr != nil {
		return nil, nil, rollErr
	}
	rollSent, rollFailed := sent.Load(), failed.Load()

	stop = make(chan struct{})
	sent, failed, done = steadyLoad(g.Port, stop)
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(members))
	for _, m := range members {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- m.restart() }()
	}
	wg.Wait()
	plainTime := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			close(stop)
			done.Wait()
			return nil, nil, err
		}
	}
	if err := waitUp(ctx, client, len(g.Members)); err != nil {
		close(stop)
		done.Wait()
		return nil, nil, err
	}
	close(stop)
	done.Wait()
	plainSent, plainFailed := sent.Load(), failed.Load()
	rows = append(rows, row{what: "restart 3 members under 400 req/s", oursName: "rolling restart (front.Roll)", base: "plain restart of all",
		ours:     fmt.Sprintf("%d of %d failed, %s", rollFailed, rollSent, round(rollTime)),
		baseline: fmt.Sprintf("%d of %d failed, %s", plainFailed, plainSent, round(plainTime)),
		ratio:    float64(plainFailed) / float64(max(rollFailed, 1)), ratioIs: "plain/rolling failed (min 1)"})
	return rows, notes, nil
}

// waitUp waits until the front sees n members up.
func waitUp(ctx context.Context, c *front.Client, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := c.Stats(ctx)
		up := 0
		for _, m := range s.Members {
			if m.State == front.Up {
				up++
			}
		}
		if err == nil && up == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("front: %d of %d members up (%v)", up, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func haproxyVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimPrefix(strings.TrimSpace(line), "HAProxy version ")
}
