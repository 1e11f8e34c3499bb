package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// environment is a processor environment for tests: valid unless changed.
type environment map[string]string

// validEnvironment returns what kato-manager would pass processor-1, with a
// fresh state directory.
func validEnvironment(t *testing.T) environment {
	t.Helper()
	return environment{
		"PROCESSOR_ID":       "processor-1",
		"PROCESSOR_NAME":     "Main Processor",
		"INDEXER_TYPE":       "VI",
		"MAX_PREDICTIONS":    "100",
		"RECALL_THRESHOLD":   "0.1",
		"MAX_PATTERN_LENGTH": "0",
		"PERSISTENCE":        "5",
		"QUIESCENCE":         "3",
		"LOG_LEVEL":          "INFO",
		"MONGO_BASE_URL":     "mongodb://localhost:27017",
		"REST_PORT":          "8001",
		"ZMQ_PORT":           "5556",
		"PORT":               "8001",
		"HOSTNAME":           "kato-processor-1",
		"MANIFEST": `{"id":"processor-1","name":"Main Processor","indexer_type":"VI","max_pattern_length":0,` +
			`"persistence":5,"max_predictions":100,"recall_threshold":0.1,"quiescence":3}`,
		"STATE_DIRECTORY": t.TempDir(),
	}
}

func (e environment) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// with returns a copy of e with the variables in set changed and those in
// unset removed.
func (e environment) with(set map[string]string, unset ...string) environment {
	c := make(environment, len(e))
	for k, v := range e {
		c[k] = v
	}
	for k, v := range set {
		c[k] = v
	}
	for _, k := range unset {
		delete(c, k)
	}
	return c
}

func TestLoadSettings(t *testing.T) {
	base := validEnvironment(t)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		env     environment
		wantErr string
	}{
		{name: "valid", env: base},
		{name: "several state directories", env: base.with(map[string]string{"STATE_DIRECTORY": base["STATE_DIRECTORY"] + ":/var/lib/other"})},
		{name: "manifest id mismatch", env: base.with(map[string]string{"MANIFEST": `{"id":"processor-2"}`}),
			wantErr: `invalid MANIFEST id "processor-2": must match PROCESSOR_ID "processor-1"`},
		{name: "manifest without id", env: base.with(map[string]string{"MANIFEST": `{"name":"Main Processor"}`}),
			wantErr: `invalid MANIFEST id "": must match PROCESSOR_ID "processor-1"`},
		{name: "manifest not JSON", env: base.with(map[string]string{"MANIFEST": `{"id":"processor-1",`}),
			wantErr: `invalid MANIFEST "{\"id\":\"processor-1\",": unexpected end of JSON input`},
		{name: "manifest not an object", env: base.with(map[string]string{"MANIFEST": `["processor-1"]`}),
			wantErr: `invalid MANIFEST "[\"processor-1\"]": must be a JSON object`},
		{name: "manifest number as string", env: base.with(map[string]string{"MANIFEST": `{"id":"processor-1","max_predictions":"100"}`}),
			wantErr: `cannot unmarshal string into Go struct field manifest.max_predictions of type int`},
		{name: "manifest unset", env: base.with(nil, "MANIFEST"), wantErr: "MANIFEST is not set"},
		{name: "id unset", env: base.with(nil, "PROCESSOR_ID"), wantErr: "PROCESSOR_ID is not set"},
		{name: "id with space", env: base.with(map[string]string{"PROCESSOR_ID": "processor 1"}),
			wantErr: `invalid PROCESSOR_ID "processor 1": must contain only letters, digits, hyphens and underscores`},
		{name: "rest port not a number", env: base.with(map[string]string{"REST_PORT": "http"}),
			wantErr: `invalid REST_PORT "http": must be a port number between 1 and 65535`},
		{name: "zmq port out of range", env: base.with(map[string]string{"ZMQ_PORT": "70000"}),
			wantErr: `invalid ZMQ_PORT "70000": must be a port number between 1 and 65535`},
		{name: "zmq port unset", env: base.with(nil, "ZMQ_PORT"), wantErr: "ZMQ_PORT is not set"},
		{name: "ports equal", env: base.with(map[string]string{"ZMQ_PORT": "8001"}),
			wantErr: "invalid ZMQ_PORT 8001: must differ from REST_PORT 8001"},
		{name: "state directory unset", env: base.with(nil, "STATE_DIRECTORY"),
			wantErr: "STATE_DIRECTORY is not set: the unit must set StateDirectory="},
		{name: "state directory missing", env: base.with(map[string]string{"STATE_DIRECTORY": "/nonexistent/kato"}),
			wantErr: `invalid STATE_DIRECTORY "/nonexistent/kato"`},
		{name: "state directory a file", env: base.with(map[string]string{"STATE_DIRECTORY": notDir}),
			wantErr: "must be a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := loadSettings(tc.env.lookup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loadSettings error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadSettings: %v", err)
			}
			want := manifest{ID: "processor-1", Name: "Main Processor", IndexerType: "VI", Persistence: 5,
				MaxPredictions: 100, RecallThreshold: 0.1, Quiescence: 3}
			if s.manifest != want {
				t.Errorf("manifest = %+v, want %+v", s.manifest, want)
			}
			if s.restPort != 8001 || s.zmqPort != 5556 {
				t.Errorf("ports = %d, %d; want 8001, 5556", s.restPort, s.zmqPort)
			}
			if s.stateDir != base["STATE_DIRECTORY"] {
				t.Errorf("state directory = %q, want %q", s.stateDir, base["STATE_DIRECTORY"])
			}
		})
	}
}

func TestHandler(t *testing.T) {
	env := validEnvironment(t).with(nil, "LOG_LEVEL", "HOSTNAME")
	srv := startHandler(t, env)

	t.Run("ping", func(t *testing.T) {
		for _, path := range []string{"/processor-1/ping", "/kato-api/ping"} {
			var got pingResponse
			getJSON(t, srv.URL+path, &got)
			if want := (pingResponse{Status: "okay", ID: "processor-1"}); got != want {
				t.Errorf("GET %s = %+v, want %+v", path, got, want)
			}
		}
	})

	t.Run("ping of another processor", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/processor-2/ping")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /processor-2/ping status = %d, want 404", resp.StatusCode)
		}
	})

	t.Run("env reports what was set", func(t *testing.T) {
		var got map[string]string
		getJSON(t, srv.URL+"/env", &got)
		if len(got) != len(env) {
			t.Errorf("GET /env returned %d variables, want %d: %v", len(got), len(env), got)
		}
		for k, v := range env {
			if got[k] != v {
				t.Errorf("GET /env %s = %q, want %q", k, got[k], v)
			}
		}
		for _, unset := range []string{"LOG_LEVEL", "HOSTNAME"} {
			if v, ok := got[unset]; ok {
				t.Errorf("GET /env reports unset %s as %q", unset, v)
			}
		}
	})

	t.Run("learn needs POST", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/processor-1/learn")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /processor-1/learn status = %d, want 405", resp.StatusCode)
		}
	})
}

func TestLearnedSurvivesRestart(t *testing.T) {
	env := validEnvironment(t)
	first := startHandler(t, env)
	for want := 1; want <= 3; want++ {
		if got := postLearn(t, first.URL); got != want {
			t.Fatalf("learn #%d returned %d", want, got)
		}
	}
	data, err := os.ReadFile(filepath.Join(env["STATE_DIRECTORY"], learnedFile))
	if err != nil || string(data) != "3\n" {
		t.Fatalf("learned file = %q, %v; want \"3\\n\"", data, err)
	}
	first.Close()

	// A second processor on the same state directory is the restarted one.
	second := startHandler(t, env)
	var got learnedResponse
	getJSON(t, second.URL+"/processor-1/learned", &got)
	if want := (learnedResponse{ID: "processor-1", Learned: 3}); got != want {
		t.Errorf("learned after restart = %+v, want %+v", got, want)
	}
	if n := postLearn(t, second.URL); n != 4 {
		t.Errorf("learn after restart returned %d, want 4", n)
	}

	entries, err := os.ReadDir(env["STATE_DIRECTORY"])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state directory holds %d entries, want only %s: %v", len(entries), learnedFile, entries)
	}
}

func TestLearnConcurrently(t *testing.T) {
	srv := startHandler(t, validEnvironment(t))
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(srv.URL+"/processor-1/learn", "application/json", nil)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	var got learnedResponse
	getJSON(t, srv.URL+"/processor-1/learned", &got)
	if got.Learned != n {
		t.Errorf("learned after %d concurrent learns = %d", n, got.Learned)
	}
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		set        map[string]string
		cancel     time.Duration // cancel the context after this long; 0: never
		wantCode   int
		wantStderr string
		checkPorts bool // ping while running and check both ports are held
		noListen   bool // check the REST port stays closed while running
	}{
		{name: "manifest mismatch", set: map[string]string{"MANIFEST": `{"id":"other"}`},
			wantCode: exitBadSetup, wantStderr: `invalid MANIFEST id "other": must match PROCESSOR_ID "processor-1"`},
		{name: "bad flag value", args: []string{"--delay=soon"}, wantCode: exitBadSetup, wantStderr: `invalid value "soon" for flag -delay`},
		{name: "bad switch value", set: map[string]string{"FAKEPROCESSOR_CRASH_AFTER": "soon"},
			wantCode: exitBadSetup, wantStderr: `invalid FAKEPROCESSOR_CRASH_AFTER "soon": must be a duration`},
		{name: "crash after flag", args: []string{"--crash-after=100ms"}, wantCode: exitCrash, wantStderr: "crashing after 100ms"},
		{name: "crash after environment", set: map[string]string{"FAKEPROCESSOR_CRASH_AFTER": "100ms"}, wantCode: exitCrash},
		{name: "flag overrides environment", args: []string{"--crash-after=0"}, set: map[string]string{"FAKEPROCESSOR_CRASH_AFTER": "100ms"},
			cancel: time.Second, wantCode: exitOK, checkPorts: true},
		{name: "never listen", args: []string{"--never-listen"}, cancel: 300 * time.Millisecond, wantCode: exitOK, noListen: true},
		{name: "never listen from environment", set: map[string]string{"FAKEPROCESSOR_NEVER_LISTEN": "1"},
			cancel: 300 * time.Millisecond, wantCode: exitOK, noListen: true},
		{name: "crash while never listening", args: []string{"--never-listen", "--crash-after=100ms"}, wantCode: exitCrash, noListen: true},
		{name: "serves until terminated", cancel: time.Second, wantCode: exitOK, checkPorts: true},
		{name: "serves after delay", args: []string{"--delay=300ms"}, cancel: time.Second, wantCode: exitOK, checkPorts: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restPort, zmqPort := freePort(t), freePort(t)
			env := validEnvironment(t).with(map[string]string{
				"REST_PORT": strconv.Itoa(restPort), "ZMQ_PORT": strconv.Itoa(zmqPort),
			})
			env = env.with(tc.set)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel > 0 {
				time.AfterFunc(tc.cancel, cancel)
			}

			var stdout, stderr syncBuffer
			done := make(chan int, 1)
			go func() { done <- run(ctx, tc.args, env.lookup, &stdout, &stderr) }()

			if tc.checkPorts {
				base := fmt.Sprintf("http://127.0.0.1:%d", restPort)
				waitPing(t, base+"/processor-1/ping")
				conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", zmqPort))
				if err != nil {
					t.Errorf("ZMQ_PORT %d not held: %v", zmqPort, err)
				} else {
					conn.Close()
				}
			}
			if tc.noListen {
				time.Sleep(50 * time.Millisecond)
				if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", restPort)); err == nil {
					conn.Close()
					t.Errorf("REST_PORT %d accepted a connection; the processor was not to listen", restPort)
				}
			}

			var code int
			select {
			case code = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("run did not return within 10s")
			}
			if code != tc.wantCode {
				t.Errorf("exit status = %d, want %d (stderr: %s)", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.wantStderr)
			}
			if tc.wantCode != exitBadSetup {
				want := fmt.Sprintf("fakeprocessor started: id=processor-1 name=\"Main Processor\" rest_port=%d zmq_port=%d\n", restPort, zmqPort)
				if stdout.String() != want {
					t.Errorf("stdout = %q, want %q", stdout.String(), want)
				}
			} else if stdout.String() != "" {
				t.Errorf("stdout = %q, want nothing for an invalid setup", stdout.String())
			}
			if tc.checkPorts {
				if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", restPort)); err == nil {
					conn.Close()
					t.Errorf("REST_PORT %d still accepts connections after shutdown", restPort)
				}
			}
		})
	}
}

func TestBinary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the processor needs the go tool: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "fakeprocessor")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name       string
		args       []string
		set        map[string]string
		terminate  bool // wait until it serves, then send SIGTERM
		wantCode   int
		wantStderr string
	}{
		{name: "SIGTERM exits cleanly", terminate: true, wantCode: exitOK},
		{name: "crash", args: []string{"--crash-after=100ms"}, wantCode: exitCrash, wantStderr: "crashing after 100ms"},
		{name: "bad environment", set: map[string]string{"MANIFEST": `{"id":"processor-2"}`},
			wantCode: exitBadSetup, wantStderr: `invalid MANIFEST id "processor-2": must match PROCESSOR_ID "processor-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restPort, zmqPort := freePort(t), freePort(t)
			env := validEnvironment(t).with(map[string]string{
				"REST_PORT": strconv.Itoa(restPort), "ZMQ_PORT": strconv.Itoa(zmqPort),
			}).with(tc.set)
			cmd := exec.Command(bin, tc.args...)
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr syncBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })
			if tc.terminate {
				waitPing(t, fmt.Sprintf("http://127.0.0.1:%d/processor-1/ping", restPort))
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("processor did not exit within 10s")
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.wantCode {
				t.Errorf("exit status = %d, want %d (stderr: %s)", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.wantStderr)
			}
			if tc.wantCode != exitBadSetup && !strings.HasPrefix(stdout.String(), "fakeprocessor started: id=processor-1 ") {
				t.Errorf("stdout = %q, want the start line", stdout.String())
			}
		})
	}
}

// startHandler serves a processor for env until the test ends.
func startHandler(t *testing.T, env environment) *httptest.Server {
	t.Helper()
	s, err := loadSettings(env.lookup)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newProcessor(s).handler())
	t.Cleanup(srv.Close)
	return srv
}

// getJSON decodes the JSON body of a GET of url into v, failing unless the
// status is 200.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s status = %d, want 200", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s Content-Type = %q, want application/json", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
}

// postLearn teaches the processor at base once and returns the new count.
func postLearn(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Post(base+"/processor-1/learn", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST learn status = %d, want 200", resp.StatusCode)
	}
	var got learnedResponse
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "processor-1" {
		t.Errorf("POST learn id = %q, want processor-1", got.ID)
	}
	return got.Learned
}

// waitPing polls url until it answers 200.
func waitPing(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s did not answer 200 within 5s (last error: %v)", url, err)
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
