package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// environment is a processor environment for tests.
type environment map[string]string

func (e environment) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// with returns a copy of e with the variables in set changed and those in
// unset removed.
func (e environment) with(set map[string]string, unset ...string) environment {
	c := maps.Clone(e)
	maps.Copy(c, set)
	for _, k := range unset {
		delete(c, k)
	}
	return c
}

const fullManifest = `{"id":"processor-1","name":"Main Processor","indexer_type":"VI","max_pattern_length":0,"persistence":5,` +
	`"smoothness":3,"auto_act_method":"none","auto_act_threshold":0.8,"always_update_frequencies":false,` +
	`"max_predictions":100,"recall_threshold":0.1,"quiescence":3,"search_depth":10,"sort":true,"process_predictions":true}`

// envA returns what kato-manager passes a generation-A processor, with a
// MongoDB stand-in listening, free ports and a fresh state directory.
func envA(t *testing.T) environment {
	t.Helper()
	return environment{
		"PROCESSOR_ID": "processor-1", "PROCESSOR_NAME": "Main Processor", "MANIFEST": fullManifest,
		"HOSTNAME": "kato-processor-1", "LOG_LEVEL": "INFO", "MONGO_BASE_URL": "mongodb://" + mongo(t),
		"REST_PORT": strconv.Itoa(freePort(t)), "ZMQ_PORT": strconv.Itoa(freePort(t)),
		"SOURCES": "[]", "TARGETS": "[]", "AS_INPUTS": "[]", "KATO_ZMQ_IMPLEMENTATION": "improved",
		"STATE_DIRECTORY": t.TempDir(),
	}
}

// envB returns what kato-manager passes a generation-B processor.
func envB(t *testing.T) environment {
	t.Helper()
	return environment{
		"PROCESSOR_ID": "processor-1", "PROCESSOR_NAME": "Main Processor", "HOSTNAME": "kato-processor-1",
		"LOG_LEVEL": "INFO", "MONGO_BASE_URL": "mongodb://localhost:27017", "MAX_PREDICTIONS": "200", "SORT": "false",
		"PORT": strconv.Itoa(freePort(t)), "STATE_DIRECTORY": t.TempDir(),
	}
}

// mongo accepts connections and echoes them, as the MongoDB stand-in does,
// until the test ends. With closing set it closes each at once instead, as
// a forwarder with nothing behind it does.
func mongo(t *testing.T, closing ...bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if len(closing) > 0 {
				c.Close()
				continue
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// silentListener accepts connections into its backlog and never serves
// them, as a socket whose forwarder cannot start.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// runProcessor runs the processor in this process until the test ends and
// returns the exit status channel.
func runProcessor(t *testing.T, env environment, args ...string) (<-chan int, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, env.lookup, io.Discard, &stderr) }()
	t.Cleanup(cancel)
	return done, &stderr
}

func TestGenerationAFaults(t *testing.T) {
	base := envA(t)
	for _, tc := range []struct {
		name string
		env  environment
		args []string
		want string
	}{
		{"missing MANIFEST key sort", base.with(map[string]string{"MANIFEST": strings.Replace(fullManifest, `,"sort":true`, "", 1)}), nil, "Failed to start KATO Engine: 'sort'"},
		{"missing MANIFEST key smoothness", base.with(map[string]string{"MANIFEST": strings.Replace(fullManifest, `"smoothness":3,`, "", 1)}), nil, "'smoothness'"},
		{"the old 8-key MANIFEST", base.with(map[string]string{"MANIFEST": `{"id":"processor-1","name":"P","indexer_type":"VI","max_pattern_length":0,"persistence":5,"max_predictions":100,"recall_threshold":0.1,"quiescence":3}`}), nil, "'smoothness'"},
		{"no HOSTNAME", base.with(nil, "HOSTNAME"), nil, "'HOSTNAME'"},
		{"no LOG_LEVEL", base.with(nil, "LOG_LEVEL"), nil, "'LOG_LEVEL'"},
		{"no MONGO_BASE_URL", base.with(nil, "MONGO_BASE_URL"), nil, "'MONGO_BASE_URL'"},
		{"no MANIFEST, settings as variables", base.with(map[string]string{"MAX_PREDICTIONS": "5"}, "MANIFEST"), nil, "'MANIFEST'"},
		{"MongoDB refuses", base.with(map[string]string{"MONGO_BASE_URL": "mongodb://127.0.0.1:" + strconv.Itoa(freePort(t))}), []string{"--mongo-timeout=300ms"}, "did not accept a connection within 300ms"},
		{"MongoDB closes at once", base.with(map[string]string{"MONGO_BASE_URL": "mongodb://" + mongo(t, true)}), []string{"--mongo-timeout=300ms"}, "did not accept a connection within 300ms"},
		{"MongoDB never answers", base.with(map[string]string{"MONGO_BASE_URL": "mongodb://" + silentListener(t)}), []string{"--mongo-timeout=300ms"}, "did not accept a connection within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, stderr := runProcessor(t, tc.env, append([]string{"--generation=a"}, tc.args...)...)
			select {
			case code := <-done:
				if code != exitFailure || !strings.Contains(stderr.String(), tc.want) {
					t.Fatalf("exit %d, stderr %q; want exit 1 and %q", code, stderr.String(), tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still running")
			}
			// It opened no port.
			if c, err := net.Dial("tcp", "127.0.0.1:"+tc.env["REST_PORT"]); err == nil {
				c.Close()
				t.Error("the REST port was opened")
			}
		})
	}
	t.Run("optional keys may be left out", func(t *testing.T) {
		m := strings.Replace(strings.Replace(fullManifest, `"search_depth":10,`, "", 1), `,"process_predictions":true`, "", 1)
		env := base.with(map[string]string{"MANIFEST": m})
		runProcessor(t, env, "--generation=a")
		waitStatus(t, "http://127.0.0.1:"+env["REST_PORT"]+"/kato-api/ping", 200)
	})
}

// startA starts a generation-A processor whose gateway looks for its engine
// at engine, playing the fixed 127.0.0.1:5555 of one network namespace.
func startA(t *testing.T, env environment, engine string, gatewayTimeout time.Duration) *processor {
	t.Helper()
	b := behaviour{generation: "a", engineAddress: engine, gatewayTimeout: gatewayTimeout}
	p, _, err := newProcessor(b, env.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stopped() })
	return p
}

// TestGenerationAGateway plays two instances in one network namespace: the
// second one's gateway reaches the first one's engine, as the real one
// does, and a gateway with no engine at the fixed address listens but
// fails every call after the gateway timeout.
func TestGenerationAGateway(t *testing.T) {
	first := envA(t)
	second := envA(t).with(map[string]string{"PROCESSOR_ID": "processor-2",
		"MANIFEST": strings.Replace(strings.Replace(fullManifest, "processor-1", "processor-2", 1), "Main Processor", "Secondary", 1)})
	engine := "127.0.0.1:" + first["ZMQ_PORT"]
	startA(t, first, engine, time.Second)
	startA(t, second, engine, time.Second)

	for _, tc := range []struct{ env environment }{{first}, {second}} {
		url := "http://127.0.0.1:" + tc.env["REST_PORT"]
		body, hdr := get(t, url+"/anything-at-all/ping", 200)
		if body["id"] != "anything-at-all" || body["name"] != "Main Processor" || hdr.Get(engineHeader) != "processor-1" {
			t.Errorf("ping via %s = %v (engine %s), want the id echoed and processor-1's engine", tc.env["PROCESSOR_ID"], body, hdr.Get(engineHeader))
		}
	}
	// What the second instance learns goes into the first one's store.
	post(t, "http://127.0.0.1:"+second["REST_PORT"]+"/processor-2/learn")
	if body, _ := get(t, "http://127.0.0.1:"+first["REST_PORT"]+"/processor-1/learned", 200); body["learned"] != 1.0 {
		t.Errorf("first's store after second learned: %v", body)
	}
	status, _ := get(t, "http://127.0.0.1:"+first["REST_PORT"]+"/processor-1/status", 200)
	if m, _ := status["manifest"].(map[string]any); m["search_depth"] != 10.0 || m["sort"] != true {
		t.Errorf("status manifest = %v", status["manifest"])
	}

	lonely := envA(t)
	startA(t, lonely, "127.0.0.1:"+strconv.Itoa(freePort(t)), 300*time.Millisecond)
	url := "http://127.0.0.1:" + lonely["REST_PORT"]
	get(t, url+"/kato-api/ping", 200)
	began := time.Now()
	get(t, url+"/processor-1/ping", 500)
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Errorf("a gateway without engine failed after %s, want the gateway timeout", took)
	}
}

func TestGenerationB(t *testing.T) {
	env := envB(t).with(map[string]string{"MANIFEST": "not even JSON", "REST_PORT": "1", "ZMQ_PORT": "2"})
	runProcessor(t, env)
	url := "http://127.0.0.1:" + env["PORT"]
	waitStatus(t, url+"/health", 200)
	status, hdr := get(t, url+"/status", 200)
	settings, _ := status["settings"].(map[string]any)
	if settings["MAX_PREDICTIONS"] != "200" || settings["SORT"] != "false" || hdr.Get(engineHeader) != "processor-1" {
		t.Errorf("status = %v", status)
	}
	get(t, url+"/processor-1/ping", 404)
	get(t, url+"/kato-api/ping", 404)
	for want := 1; want <= 2; want++ {
		if body := post(t, url+"/learn"); body["learned"] != float64(want) {
			t.Fatalf("learn #%d = %v", want, body)
		}
	}
	for _, missing := range []string{"PROCESSOR_ID", "PORT", "STATE_DIRECTORY"} {
		done, stderr := runProcessor(t, envB(t).with(nil, missing))
		if code := <-done; code != exitBadSetup || !strings.Contains(stderr.String(), missing) {
			t.Errorf("without %s: exit %d, %q", missing, code, stderr.String())
		}
	}
}

// TestLearnedSurvivesRestart: the store is in the state directory.
func TestLearnedSurvivesRestart(t *testing.T) {
	env := envB(t)
	url := "http://127.0.0.1:" + env["PORT"]
	for round := 1; round <= 2; round++ {
		b := behaviour{generation: "b"}
		p, _, err := newProcessor(b, env.lookup)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.serve(); err != nil {
			t.Fatal(err)
		}
		if body := post(t, url+"/learn"); body["learned"] != float64(round) {
			t.Fatalf("round %d learned %v", round, body)
		}
		for _, s := range p.servers {
			s.Close()
		}
	}
}

func TestParseBehaviour(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  environment
		want string
	}{
		{[]string{"--generation=d"}, nil, `invalid --generation "d": must be a, b or c`},
		{[]string{"--delay=-1s"}, nil, "invalid --delay -1s"},
		{nil, environment{"FAKEPROCESSOR_CRASH_AFTER": "soon"}, `invalid FAKEPROCESSOR_CRASH_AFTER "soon"`},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
		{nil, environment{"FAKEPROCESSOR_HANG_ON_SIGTERM": "maybe"}, `invalid FAKEPROCESSOR_HANG_ON_SIGTERM "maybe"`},
	} {
		if _, err := parseBehaviour(tc.args, tc.env.lookup, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseBehaviour(%q, %v) = %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
	b, err := parseBehaviour(nil, environment{"FAKEPROCESSOR_GENERATION": "a"}.lookup, io.Discard)
	if err != nil || b.generation != "a" || b.engineAddress != "127.0.0.1:5555" || b.gatewayTimeout != 17*time.Second || b.mongoTimeout != 33*time.Second {
		t.Errorf("defaults = %+v, %v", b, err)
	}
}

// TestBinary runs the built program for what only a process shows: exit
// statuses and signals.
func TestBinary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the processor needs the go tool: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "fakeprocessor")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	start := func(t *testing.T, env environment, args ...string) (*exec.Cmd, chan error, *syncBuffer) {
		cmd := exec.Command(bin, args...)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return cmd, done, &stderr
	}
	t.Run("generation A exits 0 on SIGTERM", func(t *testing.T) {
		env := envA(t)
		cmd, done, _ := start(t, env, "--generation=a")
		waitStatus(t, "http://127.0.0.1:"+env["REST_PORT"]+"/kato-api/ping", 200)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("exit %d", code)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("did not exit on SIGTERM")
		}
	})
	t.Run("generation B does not exit on SIGTERM", func(t *testing.T) {
		env := envB(t)
		cmd, done, _ := start(t, env)
		waitStatus(t, "http://127.0.0.1:"+env["PORT"]+"/health", 200)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			t.Fatalf("exited on SIGTERM with %d", cmd.ProcessState.ExitCode())
		case <-time.After(time.Second):
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+env["PORT"]); err == nil {
			c.Close()
			t.Error("still serving after SIGTERM; the server should have finished")
		}
		cmd.Process.Kill()
		<-done
	})
	t.Run("generation A with --hang-on-sigterm hangs until SIGKILL", func(t *testing.T) {
		env := envA(t)
		cmd, done, _ := start(t, env, "--generation=a", "--hang-on-sigterm")
		waitStatus(t, "http://127.0.0.1:"+env["REST_PORT"]+"/kato-api/ping", 200)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			t.Fatalf("exited on SIGTERM with %d", cmd.ProcessState.ExitCode())
		case <-time.After(time.Second):
		}
		cmd.Process.Kill()
		<-done
	})
	t.Run("crash", func(t *testing.T) {
		cmd, done, stderr := start(t, envB(t), "--crash-after=100ms")
		<-done
		if code := cmd.ProcessState.ExitCode(); code != exitCrash || !strings.Contains(stderr.String(), "crashing after 100ms") {
			t.Fatalf("exit %d, %q", code, stderr.String())
		}
	})
}

// client opens a connection per request, so that none outlives the server
// it was made to.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, url string, want int) (map[string]any, http.Header) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s = %d, want %d", url, resp.StatusCode, want)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return body, resp.Header
}

func post(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s = %d", url, resp.StatusCode)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return body
}

// waitStatus polls url until it answers with status.
func waitStatus(t *testing.T, url string, status int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s did not answer %d within 5s (last error: %v)", url, status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for the writer and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestHang: POST /fake/hang makes a generation-A or -B processor stop
// answering while it keeps running, the fault the liveness check restarts:
// every request after it waits until its client gives up.
func TestHang(t *testing.T) {
	t.Run("b", func(t *testing.T) {
		env := envB(t)
		done, _ := runProcessor(t, env)
		url := "http://127.0.0.1:" + env["PORT"]
		waitStatus(t, url+"/health", 200)
		checkHang(t, url, done, "/health", "/status")
	})
	t.Run("a", func(t *testing.T) {
		env := envA(t)
		startA(t, env, "127.0.0.1:"+env["ZMQ_PORT"], time.Second)
		url := "http://127.0.0.1:" + env["REST_PORT"]
		get(t, url+"/processor-1/ping", 200)
		checkHang(t, url, nil, "/processor-1/ping", "/kato-api/ping")
	})
}

// checkHang posts /fake/hang at url, then checks that paths are not
// answered and, with done set, that the processor still runs.
func checkHang(t *testing.T, url string, done <-chan int, paths ...string) {
	t.Helper()
	resp, err := client.Post(url+"/fake/hang", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /fake/hang = %d, want 204", resp.StatusCode)
	}
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	for _, path := range paths {
		if resp, err := impatient.Get(url + path); err == nil {
			resp.Body.Close()
			t.Errorf("GET %s answered %d after /fake/hang", path, resp.StatusCode)
		}
	}
	select {
	case code := <-done:
		t.Errorf("the hung processor exited with %d; it must keep running", code)
	default:
	}
}
