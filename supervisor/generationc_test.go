package supervisor

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/config"
)

// withGenerationC adds the named processor "replica", of generation C, and
// stores with passwords to the configuration.
func withGenerationC(e *testEnv, workers int, serviceName string) {
	p := e.m.Config.Processor
	p.Command = []string{"/usr/bin/uvicorn", "kato.services.kato_fastapi:app", "--host", "0.0.0.0"}
	p.Generation, p.Ready, p.Network, p.StopTimeout, p.Workers, p.ServiceName = "c", "GET /health", config.NetworkHost, 35, workers, serviceName
	e.m.Config.Processors = map[string]config.Processor{"replica": p}
	e.m.Config.Stores = config.Stores{
		Redis:      "redis://:redis-secret@127.0.0.1:6379/0",
		ClickHouse: "http://kato:ch-secret@127.0.0.1:8123/kato",
		Qdrant:     "http://:qdrant-secret@127.0.0.1:6333",
	}
}

// TestGenerationCStart: a generation-C instance gets generation B's setting
// variables, SERVICE_NAME (its group's name, the processor's service_name
// over it, or its id alone), its stores with their credentials in its
// environment file only, and a command line ending in --port and
// --workers, and its stop is bounded.
func TestGenerationCStart(t *testing.T) {
	for _, tc := range []struct {
		name, group, serviceName, wantService string
	}{
		{"alone", "", "", "r1"},
		{"in a group", "edge", "", "edge"},
		{"named service", "edge", "kb-main", "kb-main"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			withGenerationC(e, 3, tc.serviceName)
			params := config.DefaultParameters()
			params["max_predictions"] = 7
			res := e.start(t, StartRequest{ID: "r1", Processor: "replica", APIPort: 8101, Group: tc.group, Parameters: params})
			if res.Instance.ZMQPort != 0 {
				t.Errorf("generation C got ZMQ port %d", res.Instance.ZMQPort)
			}
			env := readEnvFile(e.m.envPath("r1"))
			for k, want := range map[string]string{"PROCESSOR_ID": "r1", "PORT": "8101", "SERVICE_NAME": tc.wantService, "KATO_WORKERS": "3",
				"MAX_PREDICTIONS": "7", "REDIS_URL": "redis://:redis-secret@127.0.0.1:6379/0", "REDIS_ENABLED": "true",
				"CLICKHOUSE_PASSWORD": "ch-secret", "QDRANT_API_KEY": "qdrant-secret", "MONGO_BASE_URL": "", "MANIFEST": ""} {
				if env[k] != want {
					t.Errorf("env %s = %q, want %q", k, env[k], want)
				}
			}
			info, err := os.Stat(e.m.envPath("r1"))
			if err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("env file: %v, %v", info, err)
			}
			data, err := os.ReadFile(e.m.Paths.DropInPath("r1"))
			if err != nil {
				t.Fatal(err)
			}
			dropIn := string(data)
			for _, want := range []string{
				`ExecStart="/usr/bin/uvicorn" "kato.services.kato_fastapi:app" "--host" "0.0.0.0" "--port" "8101" "--workers" "3"` + "\n",
				"timeout 35 tail --pid=${MAINPID}", "TimeoutStopSec=40s\n",
			} {
				if !strings.Contains(dropIn, want) {
					t.Errorf("drop-in lacks %q:\n%s", want, dropIn)
				}
			}
			if strings.Contains(dropIn, "secret") {
				t.Errorf("a store credential is in the drop-in, which systemctl show prints:\n%s", dropIn)
			}
			// The processor's own command line in kato.toml is untouched.
			if p, _ := e.m.Config.ProcessorNamed("replica"); len(p.Command) != 4 {
				t.Errorf("processor command changed to %q", p.Command)
			}
		})
	}
}

// TestHealthBodyDecidesReadiness: generation C's /health answers 200 when
// unhealthy too; the health request reads the body.
func TestHealthBodyDecidesReadiness(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"healthy", `{"status": "healthy", "processors": 1}`, 200},
		{"unhealthy", `{"status": "unhealthy", "issues": ["redis: connection refused"]}`, 503},
		{"generation A's ping", `{"status": "okay", "id": "p"}`, 200},
		{"not JSON", `pong`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, portText, _ := net.SplitHostPort(srv.Listener.Addr().String())
			port, _ := strconv.Atoi(portText)
			got, err := httpProbe(context.Background(), port, "/health")
			if err != nil || got != tc.want {
				t.Errorf("httpProbe = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestGenerationCRefusesAPrivateNetwork: --network private for a
// generation-C instance is a field error, and nothing is registered or
// written.
func TestGenerationCRefusesAPrivateNetwork(t *testing.T) {
	e := newTestEnv(t)
	withGenerationC(e, 1, "")
	_, err := e.m.Start(context.Background(), StartRequest{ID: "r1", Processor: "replica", Network: config.NetworkPrivate, Parameters: config.DefaultParameters()})
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "network" || !strings.Contains(err.Error(), "invalid network private: must be host for a generation-c processor") {
		t.Fatalf("start --network private = %v", err)
	}
	if _, ok := e.registry(t).Instances["r1"]; ok {
		t.Error("the instance was registered")
	}
	if _, err := os.Stat(e.m.envPath("r1")); err == nil {
		t.Error("its environment file was written")
	}
}
