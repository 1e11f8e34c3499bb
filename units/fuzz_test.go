package units

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzRenderInstanceDropIn renders drop-ins from arbitrary text: whatever it
// accepts must read back, through the model of systemd's parser, as exactly
// the description, dependencies, command and limits it was given.
func FuzzRenderInstanceDropIn(f *testing.F) {
	f.Add("processor-1", "Main Processor", "/opt/kato/bin/kato", "--port", "mongod.service", "512M", 256)
	f.Add("hostile_1", hostileName, "/opt/kato processor/bin/kato-%i", "$HOME ${X} ;", `db@main\x2d1.service`, "infinity", 0)
	f.Fuzz(func(t *testing.T, id, name, exe, arg, service, memory string, tasks int) {
		d := InstanceDropIn{ID: id, Name: name, Command: []string{exe, arg}, Limits: Limits{MemoryMax: memory, TasksMax: tasks}}
		if service != "" {
			d.Services = []string{service}
		}
		content, err := RenderInstanceDropIn(d)
		if err != nil {
			return
		}
		u := parseUnitFile(t, DropInName, content)
		descriptions := u["Unit"]["Description"]
		if len(descriptions) != 1 {
			t.Fatalf("Description set %d times:\n%s", len(descriptions), content)
		}
		description, err := unescapeSpecifiers(descriptions[0])
		if err != nil {
			t.Fatal(err)
		}
		want := "KATO processor " + id
		if name != "" {
			want += " (" + name + ")"
		}
		if description != want {
			t.Errorf("Description reads back as %q, want %q", description, want)
		}
		for _, key := range []string{"After", "Wants"} {
			var got []string
			for _, line := range u["Unit"][key] {
				got = append(got, strings.Fields(line)...)
			}
			if !slices.Equal(got, d.Services) {
				t.Errorf("%s = %q, want %q", key, got, d.Services)
			}
		}
		exec := u["Service"]["ExecStart"]
		if len(exec) != 2 || exec[0] != "" {
			t.Fatalf("ExecStart lines = %q", exec)
		}
		if got := decodeExecLine(t, exec[1]); !slices.Equal(got, d.Command) {
			t.Errorf("ExecStart reads back as %q, want %q", got, d.Command)
		}
		if memory != "" && !slices.Equal(u["Service"]["MemoryMax"], []string{memory}) {
			t.Errorf("MemoryMax = %q, want %q", u["Service"]["MemoryMax"], memory)
		}
		if tasks > 0 && !slices.Equal(u["Service"]["TasksMax"], []string{strconv.Itoa(tasks)}) {
			t.Errorf("TasksMax = %q, want %d", u["Service"]["TasksMax"], tasks)
		}
		// An id too long for kato@.service's User=kato-%i gets the hashed
		// user of InstanceUser named in the drop-in; no other id names one.
		if user := InstanceUser(id); user != "kato-"+id {
			if !slices.Equal(u["Service"]["User"], []string{user}) {
				t.Errorf("User = %q for a %d-byte id, want %q", u["Service"]["User"], len(id), user)
			}
		} else if users := u["Service"]["User"]; users != nil {
			t.Errorf("User = %q for id %q, which kato@.service names itself", users, id)
		}
		for key := range u["Service"] {
			if !slices.Contains([]string{"ExecStart", "MemoryMax", "TasksMax", "User"}, key) {
				t.Errorf("input added [Service] %s=", key)
			}
		}
		for key := range u["Unit"] {
			if !slices.Contains([]string{"Description", "After", "Wants"}, key) {
				t.Errorf("input added [Unit] %s=", key)
			}
		}
	})
}

// FuzzRenderEnvironment renders environment files from arbitrary text:
// every file from a ProcessorEnv that Validate accepts must read back,
// through the model of systemd's EnvironmentFile= parser, as the values
// given and nothing else. Generation B gets one variable per setting, so
// every value given is a variable of its own.
func FuzzRenderEnvironment(f *testing.F) {
	f.Add("processor-1", "Main Processor", "INFO", "mongodb://localhost:27017", "kato-host", 0.1)
	f.Add("hostile_1", hostileName, "DEBUG $LEVEL", "mongodb://user:p%40ss@db:27017/?opt=${X}", " spaced host ", 0.05)
	plain := plainEnv
	plain.Generation = GenerationB
	want := len(envMap(decodeEnvFile(f, RenderEnvironment(plain))))
	f.Fuzz(func(t *testing.T, id, name, level, mongo, host string, threshold float64) {
		env := plain
		env.Settings = contractSettings()
		for i, s := range env.Settings {
			switch s.Env {
			case "LOG_LEVEL":
				env.Settings[i].Value = level
			case "RECALL_THRESHOLD":
				env.Settings[i].Value = threshold
			}
		}
		env.ID, env.Name, env.MongoURL, env.Hostname = id, name, mongo, host
		if env.Validate() != nil {
			return
		}
		if math.IsNaN(threshold) || math.IsInf(threshold, 0) {
			t.Fatalf("Validate accepted recall threshold %v", threshold)
		}
		assignments := decodeEnvFile(t, RenderEnvironment(env))
		got := envMap(assignments)
		if len(assignments) != len(got) || len(got) != want {
			t.Fatalf("%d assignments, %d variables, want %d once each: %q", len(assignments), len(got), want, got)
		}
		for k, want := range map[string]string{
			"PROCESSOR_ID": id, "PROCESSOR_NAME": name, "LOG_LEVEL": level, "MONGO_BASE_URL": mongo, "HOSTNAME": host,
			"RECALL_THRESHOLD": strconv.FormatFloat(threshold, 'g', -1, 64),
		} {
			if got[k] != want {
				t.Errorf("%s reads back as %q, want %q", k, got[k], want)
			}
		}
	})
}
