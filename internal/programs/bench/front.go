package main

// The front rows: a group's HAProxy front (package front) on loopback before
// processor doubles, beside the same doubles reached straight and through
// nginx least_conn as KATO's own scaling guide configures it; and the
// requests a rolling restart fails beside a plain restart of every member.
// They need haproxy and nginx (packaging/deps.sh test), not systemd.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	// duration is each way's closed loop in all, openDuration the open
	// loop's; both are split over the rounds.
	duration, openDuration *time.Duration
	clients                *int
	rounds                 *int
	rate                   *float64
	// proxyCPU, when not empty, is the CPU list (taskset -c) HAProxy and
	// nginx run on.
	proxyCPU *string
	// haproxyGlobal are lines added to the rendered configuration's global
	// section, to compare HAProxy's settings.
	haproxyGlobal *string
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
// header cleared, Host, X-Real-IP, X-Forwarded-For and X-Forwarded-Proto
// set, 60 s timeouts, buffering on; as many workers as CPUs (the guide's
// nginx:alpine image says worker_processes auto). Its access log is off as
// the front has none: both are measured without logging.
func nginxConf(dir string, port int, members []*benchMember) string {
	var b strings.Builder
	fmt.Fprintf(&b, "daemon off;\nworker_processes auto;\npid %s/nginx.pid;\nerror_log %s/error.log;\n", dir, dir)
	b.WriteString("events { worker_connections 1024; }\nhttp {\n")
	fmt.Fprintf(&b, "  access_log off;\n  client_body_temp_path %s;\n  proxy_temp_path %s;\n", dir, dir)
	b.WriteString("  upstream kato_backend {\n    least_conn;\n")
	for _, m := range members {
		fmt.Fprintf(&b, "    server 127.0.0.1:%d max_fails=3 fail_timeout=30s;\n", m.port)
	}
	b.WriteString("    keepalive 32;\n  }\n")
	fmt.Fprintf(&b, "  server {\n    listen 127.0.0.1:%d;\n    location / {\n", port)
	b.WriteString("      proxy_pass http://kato_backend;\n")
	b.WriteString("      proxy_set_header Host $host;\n      proxy_set_header X-Real-IP $remote_addr;\n")
	b.WriteString("      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Forwarded-Proto $scheme;\n")
	b.WriteString("      proxy_connect_timeout 60s;\n      proxy_send_timeout 60s;\n      proxy_read_timeout 60s;\n")
	b.WriteString("      proxy_buffering on;\n      proxy_buffer_size 4k;\n      proxy_buffers 8 4k;\n")
	b.WriteString("      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n  }\n}\n")
	return b.String()
}

// load is what one load on one target saw: the answered requests'
// latencies, the failures, and the CPU each process took meanwhile.
type load struct {
	elapsed time.Duration
	lat     []time.Duration
	failed  int
	// cpu is the CPU time taken during the load by the load's own process
	// (the clients), the proxy (every process of it) and the members.
	client, proxy, members time.Duration
	// added are, in an open loop, each request's latency less that of the
	// request sent the first way just before it.
	added []time.Duration
}

func (l *load) add(o load) {
	l.elapsed += o.elapsed
	l.lat = append(l.lat, o.lat...)
	l.added = append(l.added, o.added...)
	l.failed += o.failed
	l.client += o.client
	l.proxy += o.proxy
	l.members += o.members
}

func (l load) rate() float64 { return float64(len(l.lat)) / l.elapsed.Seconds() }

// perRequest is a CPU time divided over the answered requests.
func (l load) perRequest(cpu time.Duration) time.Duration {
	if len(l.lat) == 0 {
		return 0
	}
	return cpu / time.Duration(len(l.lat))
}

// cpuPerRequest is the CPU all three took per answered request.
func (l load) cpuPerRequest() time.Duration { return l.perRequest(l.client + l.proxy + l.members) }

func (l load) String() string {
	if len(l.lat) == 0 {
		return fmt.Sprintf("no answer, %d failed", l.failed)
	}
	s := fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, %d failed", l.rate(), round(percentile(l.lat, 50)), round(percentile(l.lat, 99)), l.failed)
	if l.client == 0 {
		return s // an open loop's ways share the clients' process
	}
	s += "; CPU/req: clients " + us(l.perRequest(l.client))
	if l.proxy > 0 {
		s += ", proxy " + us(l.perRequest(l.proxy))
	}
	return s + ", members " + us(l.perRequest(l.members))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

// target is where a load is sent: a port, and the processes whose CPU the
// load is charged with.
type target struct {
	name    string
	port    int
	proxy   []int // the proxy's main process, whose descendants count too
	members []int
}

// measure runs send against t and charges it with the CPU taken meanwhile.
func measure(t target, send func(port int) load) load {
	c0, p0, m0 := selfCPU(), treesCPU(t.proxy), treesCPU(t.members)
	l := send(t.port)
	l.client, l.proxy, l.members = selfCPU()-c0, treesCPU(t.proxy)-p0, treesCPU(t.members)-m0
	return l
}

// interleaved measures every target in rounds, each round a slice of the
// load on each target in an order that turns from round to round, so that
// what else the machine does meanwhile falls on all of them alike. It
// returns each round's loads, by target.
func interleaved(targets []target, rounds int, send func(port int) load) [][]load {
	out := make([][]load, rounds)
	for r := range rounds {
		out[r] = make([]load, len(targets))
		for k := range targets {
			i := (k + r) % len(targets)
			out[r][i] = measure(targets[i], send)
		}
	}
	return out
}

// total adds up each target's loads over the rounds.
func total(rounds [][]load) []load {
	var sum []load
	for _, r := range rounds {
		if sum == nil {
			sum = make([]load, len(r))
		}
		for i, l := range r {
			sum[i].add(l)
		}
	}
	return sum
}

// spread is a measure's median over the rounds, with its least and
// greatest: a round the machine's other work fell on moves the range, not
// the median.
type spread struct{ med, lo, hi float64 }

// perRound is the spread of f over the rounds, each round's loads by target.
func perRound(rounds [][]load, f func(ways []load) float64) spread {
	xs := make([]float64, len(rounds))
	for i, r := range rounds {
		xs[i] = f(r)
	}
	slices.Sort(xs)
	n := len(xs)
	if n == 0 {
		return spread{}
	}
	med := xs[n/2]
	if n%2 == 0 {
		med = (xs[n/2-1] + xs[n/2]) / 2
	}
	return spread{med: med, lo: xs[0], hi: xs[n-1]}
}

func (s spread) ratio() string { return fmt.Sprintf("%.2f (%.2f to %.2f)", s.med, s.lo, s.hi) }

// ms and µs read a spread of durations in nanoseconds.
func (s spread) ms() string {
	return fmt.Sprintf("%.2fms (%.2f to %.2f)", s.med/1e6, s.lo/1e6, s.hi/1e6)
}

func (s spread) µs() string {
	return fmt.Sprintf("%.0fµs (%.0f to %.0f)", s.med/1e3, s.lo/1e3, s.hi/1e3)
}

// closedLoad sends POST /observe from clients keep-alive clients, each
// waiting for its answer, for d: a closed loop, which runs the target at
// saturation and so measures its throughput.
func closedLoad(port, clients int, d time.Duration) load {
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
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
	return load{elapsed: time.Since(start), lat: lat, failed: int(failed.Load())}
}

// openLoad sends POST /observe at rate requests a second in all for d,
// each at its scheduled time whether or not the earlier ones were
// answered, over keep-alive connections, to the ports in turn: an open
// loop, which measures the latency each way adds below saturation. The
// ways take turns request by request, so that a stall of the machine
// (other work on its cores) falls on all of them alike. A request's
// latency runs from its scheduled time, so that a stall of the sender
// counts as it would for a real client.
func openLoad(ports []int, rate float64, d time.Duration) []load {
	transport := &http.Transport{MaxIdleConnsPerHost: 256}
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: transport}
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d / interval)
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if observe(client, ports[i%len(ports)]) == nil {
				lat[i], ok[i] = time.Since(at), true
			}
		}()
	}
	wg.Wait()
	loads := make([]load, len(ports))
	for i := range n {
		l := &loads[i%len(ports)]
		if ok[i] {
			l.lat = append(l.lat, lat[i])
		} else {
			l.failed++
		}
	}
	for i := range loads {
		loads[i].elapsed = time.Since(start)
	}
	// Each way's latency less the first way's, request by request: a stall
	// of the machine delays neighbouring requests alike, so the difference
	// keeps what the way itself adds.
	for k := 0; k+len(ports) <= n; k += len(ports) {
		for w := 1; w < len(ports); w++ {
			if ok[k] && ok[k+w] {
				loads[w].added = append(loads[w].added, lat[k+w]-lat[k])
			}
		}
	}
	return loads
}

// selfCPU is the CPU time this process has taken: the clients'.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is Linux's USER_HZ, the unit of /proc/PID/stat's CPU times.
const clockTick = 10 * time.Millisecond

// treesCPU is the CPU time the processes roots and their descendants
// have taken, from /proc (HAProxy's and nginx's workers are children of
// their masters).
func treesCPU(roots []int) time.Duration {
	if len(roots) == 0 {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	cpu := map[int]time.Duration{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses and may
		// hold spaces: state ppid ... utime (14th field) stime (15th).
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		parent[pid], cpu[pid] = ppid, time.Duration(ut+st)*clockTick
	}
	in := func(pid int) bool {
		for ; pid > 1; pid = parent[pid] {
			if slices.Contains(roots, pid) {
				return true
			}
		}
		return false
	}
	var sum time.Duration
	for pid, c := range cpu {
		if in(pid) {
			sum += c
		}
	}
	return sum
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
	cfg = withGlobal(cfg, *f.haproxyGlobal)
	if err := os.WriteFile(filepath.Join(dir, "front.cfg"), cfg, 0o600); err != nil {
		return nil, nil, err
	}
	hp := pinned(*f.proxyCPU, haproxy, "-W", "-db", "-f", filepath.Join(dir, "front.cfg"))
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
	ng := pinned(*f.proxyCPU, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
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

	// The same clients, the same members and the same keep-alive for all
	// three; only the way in differs. Straight goes to one member: what a
	// client of one instance gets today.
	var memberPIDs []int
	for _, m := range members {
		memberPIDs = append(memberPIDs, m.cmd.Process.Pid)
	}
	straightT := target{name: "straight", port: members[0].port, members: memberPIDs}
	frontT := target{name: "front", port: g.Port, proxy: []int{hp.Process.Pid}, members: memberPIDs}
	nginxT := target{name: "nginx", port: nginxPort, proxy: []int{ng.Process.Pid}, members: memberPIDs}
	targets := []target{straightT, frontT, nginxT}
	d, openD, clients, rounds, rate := *f.duration, *f.openDuration, *f.clients, *f.rounds, *f.rate
	// Warm-ups, not counted: connections made, caches and the members'
	// first allocations done, the same for every way.
	loadBefore := loadAverage()
	for _, t := range targets {
		closedLoad(t.port, clients, 500*time.Millisecond)
	}
	closedRounds := interleaved(targets, rounds, func(port int) load { return closedLoad(port, clients, d/time.Duration(rounds)) })
	ports := []int{straightT.port, frontT.port, nginxT.port}
	openLoad(ports, rate, time.Second)
	openRounds := make([][]load, rounds)
	for r := range openRounds {
		openRounds[r] = openLoad(ports, rate, openD/time.Duration(rounds))
	}
	closed, open := total(closedRounds), total(openRounds)
	straight, through, viaNginx := closed[0], closed[1], closed[2]
	straightO, throughO, nginxO := open[0], open[1], open[2]
	pct := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		return percentile(ds, p)
	}
	p99 := func(l load) time.Duration { return pct(l.lat, 99) }
	// Each round's own figures: ratios of loads measured side by side in
	// that round, and their median over the rounds.
	rateRatio := func(a, b int) spread {
		return perRound(closedRounds, func(w []load) float64 { return w[a].rate() / w[b].rate() })
	}
	cpu := func(f func(load) time.Duration) spread {
		return perRound(closedRounds, func(w []load) float64 { return float64(f(w[0])) })
	}
	cpuOf := func(i int, f func(load) time.Duration) spread {
		return perRound(closedRounds, func(w []load) float64 { return float64(f(w[i])) })
	}
	total := func(l load) time.Duration { return l.cpuPerRequest() }
	proxy := func(l load) time.Duration { return l.perRequest(l.proxy) }
	p99Ratio := func(a, b int) spread {
		return perRound(openRounds, func(w []load) float64 { return float64(p99(w[a])) / float64(p99(w[b])) })
	}
	p99Added := func(i int) spread {
		return perRound(openRounds, func(w []load) float64 { return float64(p99(w[i]) - p99(w[0])) })
	}
	frontStraight, frontNginx := rateRatio(1, 0), rateRatio(1, 2)
	satWhat := fmt.Sprintf("%d keep-alive clients, closed loop, %s each way in %d rounds", clients, d, rounds)
	openWhat := fmt.Sprintf("open loop, %.0f req/s to each way in turn, %s in %d rounds", rate/3, openD, rounds)
	median := fmt.Sprintf("median of %d rounds", rounds)
	rows := []row{
		{what: satWhat, oursName: "front (HAProxy, 3 members)", base: "straight to one member",
			ours: through.String(), baseline: straight.String(), ratio: frontStraight.med,
			ratioIs: "front/straight req/s, " + median + ", " + frontStraight.ratio() + " (goal >= 0.9)"},
		{what: satWhat, oursName: "front (HAProxy, 3 members)", base: "nginx least_conn (KATO's guide)",
			ours: through.String(), baseline: viaNginx.String(), ratio: frontNginx.med,
			ratioIs: "front/nginx req/s, " + median + ", " + frontNginx.ratio() + " (goal >= 1)"},
		{what: openWhat, oursName: "front (HAProxy, 3 members)", base: "straight to one member",
			ours: throughO.String(), baseline: straightO.String(), ratio: p99Ratio(0, 1).med,
			ratioIs: "straight/front p99, " + median + ", " + p99Ratio(0, 1).ratio()},
		{what: openWhat, oursName: "front (HAProxy, 3 members)", base: "nginx least_conn (KATO's guide)",
			ours: throughO.String(), baseline: nginxO.String(), ratio: p99Ratio(2, 1).med,
			ratioIs: "nginx/front p99, " + median + ", " + p99Ratio(2, 1).ratio() + " (goal >= 1)"},
	}
	notes := []string{
		fmt.Sprintf("p99 added over straight at %.0f req/s each way, each round's p99 less straight's in the same round, %s: front %s (goal <= 1ms), nginx %s; request by request beside the straight one sent just before, all rounds: p50 %s, p99 %s added by the front, p50 %s, p99 %s by nginx",
			rate/3, median, p99Added(1).ms(), p99Added(2).ms(),
			round(pct(throughO.added, 50)), round(pct(throughO.added, 99)), round(pct(nginxO.added, 50)), round(pct(nginxO.added, 99))),
		// Every process shares the same cores: the CPU the front takes per
		// request is taken from the clients and the members, which bounds
		// its throughput against straight's whatever HAProxy does.
		fmt.Sprintf("CPU per request at saturation, %s: straight %s, front %s of which HAProxy %s, nginx %s of which nginx %s; with the cores shared, front/straight req/s is bounded by straight's CPU/req over the front's: %s (nginx's %s)",
			median, cpu(total).µs(), cpuOf(1, total).µs(), cpuOf(1, proxy).µs(), cpuOf(2, total).µs(), cpuOf(2, proxy).µs(),
			perRound(closedRounds, func(w []load) float64 { return float64(w[0].cpuPerRequest()) / float64(w[1].cpuPerRequest()) }).ratio(),
			perRound(closedRounds, func(w []load) float64 { return float64(w[0].cpuPerRequest()) / float64(w[2].cpuPerRequest()) }).ratio()),
		fmt.Sprintf("HAProxy %s; %d rounds, their order turning, after a warm-up of each way that is not counted; %s; the machine's load average %s before these rows, %s after",
			haproxyVersion(haproxy), rounds, cpuNote(*f.proxyCPU), loadBefore, loadAverage()),
	}
	// Below saturation a request waits for no other: its p50 is the way's
	// own, a millisecond or two on loopback.
	if r := straightO.rate(); r < 0.9*rate/3 || pct(straightO.lat, 50) > 20*time.Millisecond {
		// The requests were scheduled but not answered at their pace: the
		// machine was saturated, and the latencies are its queue's.
		notes = append(notes, fmt.Sprintf("the open loop fell behind: %.0f of %.0f req/s answered straight, p50 %s; its latencies measure a saturated machine, lower -front-rate", r, rate/3, round(pct(straightO.lat, 50))))
	}

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

// withGlobal adds the lines of extra, separated by ';', at the end of the
// global section of the configuration cfg: after the rendered settings,
// as HAProxy keeps the last of two lines setting the same thing (such as
// nbthread).
func withGlobal(cfg []byte, extra string) []byte {
	if extra == "" {
		return cfg
	}
	lines := "\n    " + strings.ReplaceAll(extra, ";", "\n    ")
	return bytes.Replace(cfg, []byte("\n\ndefaults\n"), []byte(lines+"\n\ndefaults\n"), 1)
}

// pinned is the command of bin with args, on the CPUs cpus when not empty.
func pinned(cpus, bin string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpus, bin}, args...)...)
}

func cpuNote(cpus string) string {
	if cpus == "" {
		return "clients, proxy and members share every CPU"
	}
	return "HAProxy and nginx on CPU " + cpus + ", clients and members where the bench was started (taskset)"
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

// loadAverage is the machine's load average over the last minute, as
// /proc/loadavg gives it: what else ran on the cores the ways share.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func haproxyVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimPrefix(strings.TrimSpace(line), "HAProxy version ")
}
