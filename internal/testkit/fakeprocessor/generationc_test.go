package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envC returns what kato-manager passes a generation-C processor, with
// REDIS_URL when redisURL is set.
func envC(t *testing.T, id, redisURL string) environment {
	t.Helper()
	env := environment{
		"PROCESSOR_ID": id, "PROCESSOR_NAME": id, "HOSTNAME": "kato-" + id, "LOG_LEVEL": "INFO",
		"MAX_PREDICTIONS": "7", "SORT": "true", "SERVICE_NAME": "edge", "KATO_WORKERS": "1", "KATO_ARCHITECTURE_MODE": "hybrid",
		"PORT": strconv.Itoa(freePort(t)), "STATE_DIRECTORY": t.TempDir(), "REDIS_ENABLED": "false",
	}
	if redisURL != "" {
		env["REDIS_URL"], env["REDIS_ENABLED"] = redisURL, "true"
	}
	return env
}

// startRedis runs Debian's redis-server on the loopback with a password,
// no persistence, until the test ends, and returns its URL and a function
// that stops it. Without redis-server the test is skipped, or fails under
// CI=true.
func startRedis(t *testing.T) (string, func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (packaging/deps.sh test installs it)")
		}
		t.Skip("redis-server is not installed; packaging/deps.sh test installs it")
	}
	port := freePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--requirepass", "s3cret-pw", "--dir", t.TempDir())
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	ready := make(chan bool)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("redis-server did not become ready within 10s")
	}
	return fmt.Sprintf("redis://:s3cret-pw@127.0.0.1:%d/0", port), stop
}

// call sends a JSON request and decodes the JSON answer, failing unless
// the status is want.
func call(t *testing.T, method, url, body string, want int) (map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %v, want %d", method, url, resp.StatusCode, out, want)
	}
	return out, resp.Header
}

// TestGenerationCSessions follows a session through the contract's
// endpoints: create with node_id, config and ttl_seconds; observe; stm;
// learn (the short-term memory is cleared in CLEAR mode); predictions
// from what was learned; get; count; delete, after which it is gone.
func TestGenerationCSessions(t *testing.T) {
	redisURL, _ := startRedis(t)
	for _, tc := range []struct{ name, redis string }{{"memory", ""}, {"redis", redisURL}} {
		t.Run(tc.name, func(t *testing.T) {
			env := envC(t, "r1", tc.redis)
			runProcessor(t, env, "--generation=c")
			url := "http://127.0.0.1:" + env["PORT"]
			waitStatus(t, url+"/health", 200)
			status, _ := call(t, "GET", url+"/status", "", 200)
			wantBackend := map[string]string{"": "memory"}[tc.redis]
			if tc.redis != "" {
				wantBackend = "redis"
			}
			if status["sessions_backend"] != wantBackend || status["service_name"] != "edge" {
				t.Errorf("status = %v", status)
			}
			s, _ := call(t, "POST", url+"/sessions", `{"node_id": "node-`+tc.name+`", "config": {"max_predictions": 3}, "ttl_seconds": 600}`, 200)
			id, _ := s["session_id"].(string)
			config, _ := s["config"].(map[string]any)
			if id == "" || s["node_id"] != "node-"+tc.name || s["ttl_seconds"] != 600.0 || config["max_predictions"] != 3.0 || config["recall_threshold"] != 0.1 || config["stm_mode"] != "CLEAR" {
				t.Fatalf("session = %v", s)
			}
			base := url + "/sessions/" + id
			call(t, "POST", base+"/observe", `{"strings": ["b", "a"], "vectors": [], "emotives": {}}`, 200)
			call(t, "POST", base+"/observe", `{"strings": ["c"], "vectors": [], "emotives": {}}`, 200)
			stm, _ := call(t, "GET", base+"/stm", "", 200)
			if fmt.Sprint(stm["stm"]) != "[[a b] [c]]" {
				t.Errorf("stm = %v, want [[a b] [c]] (sorted events)", stm["stm"])
			}
			learned, _ := call(t, "POST", base+"/learn", "{}", 200)
			name, _ := learned["pattern_name"].(string)
			if !strings.HasPrefix(name, "PTRN|") {
				t.Errorf("learn = %v", learned)
			}
			if stm, _ := call(t, "GET", base+"/stm", "", 200); fmt.Sprint(stm["stm"]) != "[]" {
				t.Errorf("stm after learn = %v, want empty (STM_MODE CLEAR)", stm["stm"])
			}
			call(t, "POST", base+"/observe", `{"strings": ["c"], "vectors": [], "emotives": {}}`, 200)
			pred, _ := call(t, "GET", base+"/predictions", "", 200)
			if list, _ := pred["predictions"].([]any); len(list) != 1 || list[0].(map[string]any)["name"] != name {
				t.Errorf("predictions = %v, want %s", pred, name)
			}
			call(t, "GET", base, "", 200)
			if n, _ := call(t, "GET", url+"/sessions/count", "", 200); n["active_session_count"] != 1.0 {
				t.Errorf("count = %v", n)
			}
			call(t, "DELETE", base, "", 200)
			call(t, "GET", base, "", 404)
			call(t, "POST", base+"/observe", `{"strings": ["c"]}`, 404)
			call(t, "POST", url+"/sessions", `{"config": {}}`, 422)
			call(t, "POST", url+"/sessions", `{"node_id": "n", "ttl_seconds": 0}`, 422)
		})
	}
}

// TestGenerationCSessionExpires: a session lives ttl_seconds.
func TestGenerationCSessionExpires(t *testing.T) {
	env := envC(t, "r1", "")
	env["SESSION_AUTO_EXTEND"] = "false"
	runProcessor(t, env, "--generation=c")
	url := "http://127.0.0.1:" + env["PORT"]
	waitStatus(t, url+"/health", 200)
	s, _ := call(t, "POST", url+"/sessions", `{"node_id": "n", "ttl_seconds": 1}`, 200)
	call(t, "GET", url+"/sessions/"+s["session_id"].(string), "", 200)
	time.Sleep(1100 * time.Millisecond)
	call(t, "GET", url+"/sessions/"+s["session_id"].(string), "", 404)
}

// TestGenerationCReplicasShareRedis is the contract's point: with REDIS_URL
// any replica and any worker serves any session; without it a second
// worker does not see a session made on the first.
func TestGenerationCReplicasShareRedis(t *testing.T) {
	redisURL, stopRedis := startRedis(t)
	t.Run("without Redis, workers do not share sessions", func(t *testing.T) {
		env := envC(t, "solo", "")
		runProcessor(t, env, "--generation=c", "--workers", "2")
		url := "http://127.0.0.1:" + env["PORT"]
		waitStatus(t, url+"/health", 200)
		s, hdr := call(t, "POST", url+"/sessions", `{"node_id": "n"}`, 200)
		maker := hdr.Get("X-Fake-Worker")
		statuses := map[string]int{}
		for i := 0; i < 200 && len(statuses) < 2; i++ {
			resp, err := client.Get(url + "/sessions/" + s["session_id"].(string))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			statuses[resp.Header.Get("X-Fake-Worker")] = resp.StatusCode
		}
		if len(statuses) != 2 {
			t.Fatalf("200 requests reached workers %v only", statuses)
		}
		for w, code := range statuses {
			if want := map[bool]int{true: 200, false: 404}[w == maker]; code != want {
				t.Errorf("worker %s answered %d for worker %s's session, want %d", w, code, maker, want)
			}
		}
	})
	var urls []string
	for _, id := range []string{"r1", "r2", "r3"} {
		env := envC(t, id, redisURL)
		runProcessor(t, env, "--generation=c", "--workers", "2")
		urls = append(urls, "http://127.0.0.1:"+env["PORT"])
		waitStatus(t, urls[len(urls)-1]+"/health", 200)
	}
	s, _ := call(t, "POST", urls[0]+"/sessions", `{"node_id": "shared"}`, 200)
	id := s["session_id"].(string)
	for i, u := range urls {
		call(t, "POST", u+"/sessions/"+id+"/observe", fmt.Sprintf(`{"strings": ["s%d"]}`, i), 200)
	}
	for _, u := range urls {
		for range 4 {
			stm, hdr := call(t, "GET", u+"/sessions/"+id+"/stm", "", 200)
			if fmt.Sprint(stm["stm"]) != "[[s0] [s1] [s2]]" {
				t.Errorf("%s (worker %s) stm = %v", hdr.Get(engineHeader), hdr.Get("X-Fake-Worker"), stm["stm"])
			}
		}
	}
	// What one replica learns, another predicts from: one knowledge base.
	learned, _ := call(t, "POST", urls[1]+"/sessions/"+id+"/learn", "{}", 200)
	s2, _ := call(t, "POST", urls[2]+"/sessions", `{"node_id": "shared"}`, 200)
	call(t, "POST", urls[2]+"/sessions/"+s2["session_id"].(string)+"/observe", `{"strings": ["s1"]}`, 200)
	pred, _ := call(t, "GET", urls[0]+"/sessions/"+s2["session_id"].(string)+"/predictions", "", 200)
	if list, _ := pred["predictions"].([]any); len(list) != 1 || list[0].(map[string]any)["name"] != learned["pattern_name"] {
		t.Errorf("predictions on r1 of what r2 learned = %v", pred)
	}

	// Redis gone: /health still answers 200, and says unhealthy.
	stopRedis()
	body, _ := call(t, "GET", urls[0]+"/health", "", 200)
	if body["status"] != "unhealthy" || fmt.Sprint(body["issues"]) == "[]" {
		t.Errorf("health without Redis = %v", body)
	}
}

// TestGenerationCHealthFaults: --unhealthy-for, POST /fake/unhealthy and
// POST /fake/hang; SIGTERM exits 0.
func TestGenerationCHealthFaults(t *testing.T) {
	env := envC(t, "r1", "")
	runProcessor(t, env, "--generation=c", "--unhealthy-for=700ms", "--timeout-graceful-shutdown=1")
	url := "http://127.0.0.1:" + env["PORT"]
	waitStatus(t, url+"/health", 200)
	if body, _ := call(t, "GET", url+"/health", "", 200); body["status"] != "unhealthy" {
		t.Errorf("health at start = %v, want unhealthy", body)
	}
	time.Sleep(800 * time.Millisecond)
	if body, _ := call(t, "GET", url+"/health", "", 200); body["status"] != "healthy" || body["service_name"] != "edge" {
		t.Errorf("health after --unhealthy-for = %v, want healthy", body)
	}
	call(t, "POST", url+"/fake/unhealthy", "", 200)
	if body, _ := call(t, "GET", url+"/health", "", 200); body["status"] != "unhealthy" {
		t.Errorf("health after /fake/unhealthy = %v", body)
	}
	call(t, "POST", url+"/fake/hang", "", 200)
	c := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := c.Get(url + "/health"); err == nil {
		resp.Body.Close()
		t.Errorf("health after /fake/hang answered %d", resp.StatusCode)
	}
	call(t, "GET", url+"/status", "", 200)
}

func TestGenerationCStopsOnSIGTERM(t *testing.T) {
	env := envC(t, "r1", "")
	ctxDone, _ := runProcessorCancel(t, env, "--generation=c", "--timeout-graceful-shutdown=1")
	url := "http://127.0.0.1:" + env["PORT"]
	waitStatus(t, url+"/health", 200)
	code := ctxDone()
	if code != exitOK {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}

func TestGenerationCSetup(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  environment
		args []string
		code int
		want string
	}{
		{"no port", envC(t, "r", "").with(nil, "PORT"), nil, exitBadSetup, "PORT"},
		{"bad redis URL", envC(t, "r", "").with(map[string]string{"REDIS_URL": "http://x", "REDIS_ENABLED": "true"}), nil, exitFailure, "REDIS_URL"},
		{"bad workers", envC(t, "r", ""), []string{"--workers=0"}, exitBadSetup, "--workers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, stderr := runProcessor(t, tc.env, append([]string{"--generation=c"}, tc.args...)...)
			select {
			case code := <-done:
				if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
					t.Errorf("exit %d, %q; want %d naming %s", code, stderr.String(), tc.code, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still running")
			}
		})
	}
	// --port, as kato-manager appends it, wins over PORT.
	env := envC(t, "r", "")
	p := freePort(t)
	runProcessor(t, env, "--generation=c", "--port", strconv.Itoa(p), "--workers", "2")
	waitStatus(t, "http://127.0.0.1:"+strconv.Itoa(p)+"/health", 200)
}

// runProcessorCancel runs the processor and returns a function that
// cancels it, as SIGTERM does, and waits for its exit status.
func runProcessorCancel(t *testing.T, env environment, args ...string) (func() int, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, env.lookup, io.Discard, &stderr) }()
	t.Cleanup(cancel)
	return func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(10 * time.Second):
			t.Fatal("no exit within 10s of SIGTERM")
			return -1
		}
	}, &stderr
}
