// Command demo runs kato-manager's main job end to end, as `make demo`
// does: the three instances of the KATO multi-instance guide, and a pool of
// KG workers draining a small queue of sample documents against the KG
// service, with the stand-ins that ship in this repository in place of KATO
// and of the KG service. It runs everything in a throwaway systemd
// (internal/testkit/sdharness: systemd as PID 1 in its own namespaces, on an overlay
// of /), so the host's own systemd, units and files are left untouched, and
// removes it at the end. It needs root.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/sdharness"
	"github.com/kato-manager/kato-manager/internal/testkit/testbed"
	"github.com/kato-manager/kato-manager/units"
)

// The stand-ins, configured here and nowhere else: how the KATO processor
// double and the KG service double run inside the machine. Change these
// when the doubles change.
var (
	// processorCommand is kato.toml's [processor] command.
	processorCommand = []string{testbed.FakeProcessor, "--generation", "a"}
	// processorEnv is extra environment of every instance, as kato.toml's
	// [processor] settings give it ("KEY=value"); none is needed today.
	processorEnv []string
	// kgServiceCommand runs the KG service double as kgservice.service; it
	// listens where kg.service_url points.
	kgServiceCommand = []string{testbed.KGServiceFake, "--listen", "127.0.0.1:8088"}
	// kgServiceEnv is the KG service double's environment ("KEY=value").
	kgServiceEnv []string
	// kgServiceHealth is the URL that answers once the KG service is up.
	kgServiceHealth = "http://127.0.0.1:8088/health"
)

// config is /etc/kato/kato.toml inside the machine.
func config() string {
	quoted := make([]string, len(processorCommand))
	for i, a := range processorCommand {
		quoted[i] = strconv.Quote(a)
	}
	return fmt.Sprintf(`# kato.toml of kato-manager's demo: the stand-in processor as the guide's
# generation A, each instance in a network namespace of its own, and the
# MongoDB stand-in as the shared service.
[processor]
command = [%s]
generation = "a"
ready_timeout = 20.0

[services]
units = ["%s"]

[kg]
service_url = "http://localhost:8088"
num_workers = 2
# Small batches, so that both workers take part.
batch_size = 2
poll_interval = 1.0
`, strings.Join(quoted, ", "), testbed.MongoUnit)
}

// documents are the sample crawled documents the workers process.
//
//go:embed documents.sql
var documents string

// instances are the guide's three instances.
var instances = [][]string{
	{"start", "--id", "processor-1", "--name", "Main Processor", "--port", "8001"},
	{"start", "--id", "processor-2", "--name", "Secondary", "--port", "8002", "--max-predictions", "200"},
	{"start", "--id", "processor-3", "--name", "Auto Learner", "--port", "8003", "--max-seq-length", "10"},
}

// out receives what the demo shows.
var out io.Writer = os.Stdout

type demo struct {
	ctx context.Context
	m   *sdharness.Machine
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	host := "This host has no systemd as PID 1."
	if comm, err := os.ReadFile("/proc/1/comm"); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
		host = "This host runs systemd as PID 1; the demo leaves it alone."
	}
	fmt.Fprintf(out, `kato-manager demo
=================
Everything runs in a throwaway systemd (internal/testkit/sdharness): systemd as PID 1
in its own namespaces, on an overlay of /, removed at the end, so no unit,
file or process of this host is changed. %s
Stand-ins from this repository: %s for KATO
(generation A, each instance with --network private), %s
(as %s) for MongoDB, and %s for the KG service.
`, host, strings.Join(processorCommand, " "), testbed.MongoStandIn, testbed.MongoUnit, strings.Join(kgServiceCommand, " "))
	step("building kato-manager, kg-worker and the stand-ins (the first build on a machine fetches and compiles for a few minutes)")
	start := time.Now()
	if _, err := testbed.BuildShowing(out); err != nil {
		return err
	}
	fmt.Fprintf(out, "    built in %s\n", time.Since(start).Round(time.Second))
	step("booting the throwaway systemd")
	m, err := sdharness.Boot(ctx, sdharness.Options{})
	if err != nil {
		return err
	}
	d := &demo{ctx: ctx, m: m}
	err = d.run()
	step("cleaning up: removing the throwaway systemd")
	if cerr := m.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("remove the machine: %w", cerr))
	}
	if err == nil {
		fmt.Fprintln(out, "done: everything ran in the throwaway systemd, which is gone; this host is as it was")
	}
	return err
}

func step(what string) { fmt.Fprintf(out, "\n==> %s\n", what) }

func (d *demo) run() error {
	step("installing kato-manager, kg-worker and the stand-ins in the machine")
	if err := testbed.Install(d.m); err != nil {
		return err
	}
	if err := d.m.WriteFile("/etc/kato/kato.toml", []byte(config()), 0o644); err != nil {
		return err
	}
	if len(processorEnv) > 0 {
		dropIn := "[Service]\n"
		for _, kv := range processorEnv {
			dropIn += "Environment=" + strconv.Quote(kv) + "\n"
		}
		if err := d.m.WriteFile("/etc/systemd/system/"+units.InstanceTemplate+".d/demo.conf", []byte(dropIn), 0o644); err != nil {
			return err
		}
	}
	if err := d.km("install-units"); err != nil {
		return err
	}

	step("the three instances of the KATO multi-instance guide")
	for _, args := range instances {
		if err := d.km(args...); err != nil {
			return err
		}
	}
	for i := 1; i <= 3; i++ {
		if err := d.show("curl", "-sS", "--max-time", "5", "-f", fmt.Sprintf("http://127.0.0.1:%d/processor-%d/ping", 8000+i, i)); err != nil {
			return err
		}
	}
	defer d.km("stop", "--all", "--no-mongo")

	step("the KG service stand-in, as kgservice.service")
	run := []string{"systemd-run", "--quiet", "--unit=kgservice"}
	for _, kv := range kgServiceEnv {
		run = append(run, "--setenv="+kv)
	}
	if err := d.show(append(append(run, "--"), kgServiceCommand...)...); err != nil {
		return err
	}
	if err := sdharness.WaitFor(d.ctx, 20*time.Second, "the KG service stand-in", func() (bool, error) {
		_, _, err := d.m.Run(d.ctx, "curl", "-sS", "--max-time", "2", "-f", kgServiceHealth)
		return err == nil, nil
	}); err != nil {
		return err
	}

	step("a queue of sample documents")
	if err := d.km("queue", "stats"); err != nil {
		return err
	}
	if err := d.m.WriteFile("/tmp/documents.sql", []byte(documents), 0o644); err != nil {
		return err
	}
	if err := d.show("sqlite3", "-cmd", ".timeout 10000", "-cmd", ".read /tmp/documents.sql", "/var/lib/kato/kg/kg.db",
		"SELECT count(*) || ' documents, ' || (SELECT count(*) FROM content_chunks) || ' chunks' FROM crawled_content"); err != nil {
		return err
	}

	step("the KG worker pool, waiting for work, drains the queue")
	if err := d.km("workers", "start"); err != nil {
		return err
	}
	defer d.km("workers", "stop")
	n := strings.Count(documents, "INSERT INTO crawled_content")
	enqueue := []string{"queue", "enqueue"}
	for i := 1; i <= n; i++ {
		enqueue = append(enqueue, strconv.Itoa(i))
	}
	start := time.Now()
	if err := d.km(enqueue...); err != nil {
		return err
	}
	if err := sdharness.WaitFor(d.ctx, 60*time.Second, "the workers to drain the queue", func() (bool, error) {
		out, _, err := d.m.Run(d.ctx, testbed.KatoManager, "queue", "stats", "--json")
		if err != nil {
			return false, err
		}
		var c struct{ Total, Pending, Processing, Completed int }
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			return false, err
		}
		if c.Pending+c.Processing == 0 && c.Completed != c.Total {
			return false, fmt.Errorf("queue drained with %d of %d items completed:\n%s", c.Completed, c.Total, out)
		}
		return c.Pending+c.Processing == 0, nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(out, "the queue is drained: %d documents in %s\n", n, time.Since(start).Round(time.Millisecond))
	// The workers publish their counters about once a second.
	time.Sleep(2 * time.Second)

	step("what kato-manager reports")
	for _, args := range [][]string{{"list"}, {"status"}, {"workers", "stats"}, {"workers", "health"}, {"queue", "list", "--limit", "5"}} {
		if err := d.km(args...); err != nil {
			return err
		}
	}

	step("stopping the workers and the instances")
	return nil
}

// km runs kato-manager inside the machine and shows the command and what
// it printed.
func (d *demo) km(args ...string) error {
	return d.show(append([]string{testbed.KatoManager}, args...)...)
}

// show runs a command inside the machine, printing it and its output.
func (d *demo) show(argv ...string) error {
	shown := make([]string, len(argv))
	for i, a := range argv {
		if i == 0 && a == testbed.KatoManager {
			a = "kato-manager"
		}
		if strings.ContainsAny(a, " '\"") {
			a = strconv.Quote(a)
		}
		shown[i] = a
	}
	fmt.Fprintf(out, "$ %s\n", strings.Join(shown, " "))
	stdout, stderr, err := d.m.Run(d.ctx, argv[0], argv[1:]...)
	fmt.Fprint(out, stdout+stderr)
	if text := stdout + stderr; text != "" && !strings.HasSuffix(text, "\n") {
		fmt.Fprintln(out)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(shown, " "), err)
	}
	return nil
}
