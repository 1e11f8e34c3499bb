package main

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// the tests can start the command as a process.
const runMainEnv = "KGSERVICEFAKE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	return cmd
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func TestServesUntilSIGTERM(t *testing.T) {
	cmd := command("--listen", "127.0.0.1:0", "--latency-ms", "5")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatalf("no output; stderr: %s", stderr.String())
	}
	addr, ok := strings.CutPrefix(lines.Text(), "listening on ")
	if !ok {
		t.Fatalf("first line %q, want \"listening on ADDR\"", lines.Text())
	}
	base := "http://" + addr

	if code, body := get(t, base+"/health"); code != 200 || !strings.Contains(body, `"status":"healthy"`) {
		t.Errorf("GET /health = %d %s", code, body)
	}
	resp, err := http.Post(base+"/control", "application/json", strings.NewReader(`{"outage":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, body := get(t, base+"/health"); code != 200 || !strings.Contains(body, `"status":"unhealthy"`) {
		t.Errorf("GET /health during outage = %d %s, want status unhealthy", code, body)
	}
	if code, body := get(t, base+"/control"); code != 200 || !strings.Contains(body, `"latency_ms":5`) || !strings.Contains(body, `"outage":true`) {
		t.Errorf("GET /control = %d %s, want latency 5 and outage", code, body)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}

func TestRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"negative latency", []string{"--latency-ms", "-1"}, "invalid --latency-ms -1: must be zero or more"},
		{"bad address", []string{"--listen", "nowhere"}, "listen on nowhere"},
		{"unknown flag", []string{"--port", "1"}, "unknown flag: --port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := command(tc.args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit = %v, want status 1", err)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q, want it to contain %q", out, tc.want)
			}
		})
	}
}
