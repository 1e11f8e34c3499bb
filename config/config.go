// Package config owns the settings of kato-manager: the global configuration
// file /etc/kato/kato.toml, the processor parameters and naming rules of KATO
// instances, and the instance registry /var/lib/kato/instances.toml.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"github.com/kato-manager/kato-manager/units"
)

// Default locations of the files kato-manager reads and writes.
const (
	// DefaultConfigPath is where the global configuration lives.
	DefaultConfigPath = "/etc/kato/kato.toml"
	// DefaultRegistryPath is where the instance registry lives.
	DefaultRegistryPath = "/var/lib/kato/instances.toml"
	// DefaultKGDBPath is the SQLite database holding the KG processing queue.
	DefaultKGDBPath = "/var/lib/kato/kg/kg.db"
	// ServiceUser is the system user the units run as.
	ServiceUser = "kato"
)

// DefaultFile is the documented default configuration, installed as
// /etc/kato/kato.toml. Loading it yields exactly Default().
//
//go:embed kato.toml
var DefaultFile []byte

// Config is the global configuration of kato-manager.
type Config struct {
	Path string `toml:"-"` // file it was loaded from
	// Processor is the default processor, the one `start` runs without
	// --processor.
	Processor Processor `toml:"processor"`
	// Processors are the named processors `start --processor NAME` runs,
	// such as two versions side by side.
	Processors map[string]Processor `toml:"processors"`
	Defaults   Parameters           `toml:"defaults"`
	Ports      Ports                `toml:"ports"`
	Services   Services             `toml:"services"`
	KG         KG                   `toml:"kg"`
	// Limits are the resource limits of every instance and worker.
	Limits Limits `toml:"limits"`
	// Stores are the stores generation-C processors share.
	Stores Stores `toml:"stores"`
	// Batch configures the commands that start many instances at once.
	Batch Batch `toml:"batch"`
	// Templates are the named parameter sets of [templates.NAME], used by
	// `template: NAME` in a fleet file and `start --template NAME`.
	Templates map[string]*Entry `toml:"-"`
	// Groups are the [groups.NAME] sections: a group's front and what
	// scale makes its members of.
	Groups map[string]Group `toml:"groups"`
}

// DefaultProcessor is the name list and status show for the [processor]
// section; no [processors.NAME] may take it.
const DefaultProcessor = "default"

// Network modes of an instance.
const (
	// NetworkHost runs the processor in the host's network namespace, on
	// the instance's own ports.
	NetworkHost = "host"
	// NetworkPrivate runs the processor in a network namespace of its own
	// (PrivateNetwork=yes), where it listens on the container-era ports
	// 8000 and 5555; socket units forward the host's ports into it and its
	// shared services out of it.
	NetworkPrivate = "private"
)

// Ports a processor listens on inside a private network namespace, those the
// old script mapped its containers' ports to.
const (
	PrivateRESTPort = 8000
	PrivateZMQPort  = 5555
)

// Processor describes how to run one KATO processor program.
type Processor struct {
	Command []string `toml:"command"` // argv; Command[0] is an absolute path
	// Generation is "a" (settings in MANIFEST, endpoints under /{id}/) or
	// "b" (one variable per setting, PORT, /health).
	Generation string `toml:"generation"`
	// Ready is the health request that says the processor answers, such as
	// "GET /{id}/ping"; {id} stands for the instance id.
	Ready string `toml:"ready"`
	// ReadyTimeout is how many seconds start and restart wait for Ready to
	// answer 200.
	ReadyTimeout float64 `toml:"ready_timeout"`
	// StopTimeout is how many seconds a stop waits after SIGTERM before
	// SIGKILL: generation B never exits on SIGTERM.
	StopTimeout float64 `toml:"stop_timeout"`
	// Network is the network mode of new instances: host or private.
	Network string `toml:"network"`
	// LogLevel is the old place of defaults.log_level, still read from
	// [processor] when [defaults] does not set log_level.
	LogLevel string `toml:"log_level,omitempty"`
	// Workers is generation C's uvicorn worker count, passed as
	// --workers; 0 for the other generations.
	Workers int `toml:"workers,omitempty"`
	// ServiceName is generation C's SERVICE_NAME for every instance of
	// this processor; "" gives each instance its group's name, or its id.
	ServiceName string `toml:"service_name,omitempty"`
	// LivenessInterval is how many seconds apart the liveness check makes
	// an instance's health request; LivenessFailures how many of them in a
	// row must fail (time out, answer other than 200, or say "unhealthy")
	// before the instance is restarted, 0 turning the check off;
	// LivenessTimeout how many seconds one request may take.
	LivenessInterval float64 `toml:"liveness_interval"`
	LivenessFailures int     `toml:"liveness_failures"`
	LivenessTimeout  float64 `toml:"liveness_timeout"`
}

// Liveness defaults. Generations A and B leave the check off: their health
// requests say little (generation A's ping answers 200 for any id, even with
// a broken engine) and earlier versions never restarted them on it.
// Generation C is built to be restarted this way (its scaling guide runs a
// liveness probe on /health), so its check is on: every 10 s, 3 failures in
// a row, as Kubernetes' livenessProbe defaults, with a 2 s timeout, the
// bound of the readiness request.
const (
	DefaultLivenessInterval = 10
	DefaultLivenessFailures = 3
	DefaultLivenessTimeout  = 2
	// MinLivenessInterval is the period of kato-liveness.timer: the check
	// runs no more often than that.
	MinLivenessInterval = 5
	// MaxLivenessFailures bounds liveness_failures.
	MaxLivenessFailures = 100
)

// LivenessOn reports whether the liveness check restarts the processor's
// instances.
func (p Processor) LivenessOn() bool { return p.LivenessFailures > 0 }

// Generation defaults of a processor section that leaves them out.
var generationDefaults = map[string]Processor{
	"a": {Ready: "GET /{id}/ping", StopTimeout: 10, Network: NetworkPrivate},
	"b": {Ready: "GET /health", StopTimeout: 3, Network: NetworkHost},
	// Generation C lets requests finish for up to 30 s after SIGTERM
	// (uvicorn's --timeout-graceful-shutdown), then flushes its writes:
	// 35 s bounds that with room for the flush.
	"c": {Ready: "GET /health", StopTimeout: 35, Network: NetworkHost},
}

// fill sets what a processor section left out, per its generation; defined
// says whether the section sets a key.
func (p *Processor) fill(defined func(key string) bool) {
	if !defined("generation") {
		p.Generation = "b"
	}
	d, ok := generationDefaults[p.Generation]
	if !ok {
		return // Validate reports the generation
	}
	if !defined("ready") {
		p.Ready = d.Ready
	}
	if !defined("stop_timeout") {
		p.StopTimeout = d.StopTimeout
	}
	if !defined("network") {
		p.Network = d.Network
	}
	if !defined("ready_timeout") {
		p.ReadyTimeout = 60
	}
	if p.Generation == units.GenerationC && !defined("workers") {
		p.Workers = 1
	}
	if !defined("liveness_interval") {
		p.LivenessInterval = DefaultLivenessInterval
	}
	if !defined("liveness_timeout") {
		p.LivenessTimeout = DefaultLivenessTimeout
	}
	if p.Generation == units.GenerationC && !defined("liveness_failures") {
		p.LivenessFailures = DefaultLivenessFailures
	}
}

// ProcessorNamed returns the processor called name: "" or DefaultProcessor
// is [processor], any other name a [processors.NAME] section.
func (c *Config) ProcessorNamed(name string) (Processor, error) {
	if name == "" || name == DefaultProcessor {
		return c.Processor, nil
	}
	if p, ok := c.Processors[name]; ok {
		return p, nil
	}
	known := []string{DefaultProcessor}
	for n := range c.Processors {
		known = append(known, n)
	}
	slices.Sort(known[1:])
	return Processor{}, &FieldError{Field: "processor", Value: name, Rule: "must name a processor of kato.toml: " + strings.Join(known, ", ")}
}

// ReadyPath returns the path of the processor's health request for the
// instance id.
func (p Processor) ReadyPath(id string) string {
	_, path, _ := strings.Cut(p.Ready, " ")
	return strings.ReplaceAll(path, "{id}", id)
}

func (p Processor) validate(prefix string) error {
	if err := validateCommand(prefix+"command", p.Command); err != nil {
		return err
	}
	if _, ok := generationDefaults[p.Generation]; !ok {
		return &FieldError{Field: prefix + "generation", Value: p.Generation, Rule: "must be a, b or c"}
	}
	if err := p.validateGenerationC(prefix); err != nil {
		return err
	}
	path, ok := strings.CutPrefix(p.Ready, "GET /")
	if !ok || strings.ContainsFunc(path, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '?' || r == '#' }) {
		return &FieldError{Field: prefix + "ready", Value: p.Ready, Rule: "must be GET followed by a path such as /{id}/ping or /health"}
	}
	if err := positiveSeconds(prefix+"ready_timeout", p.ReadyTimeout); err != nil {
		return err
	}
	if err := positiveSeconds(prefix+"stop_timeout", p.StopTimeout); err != nil {
		return err
	}
	if err := p.validateLiveness(prefix); err != nil {
		return err
	}
	if p.Network != NetworkHost && p.Network != NetworkPrivate {
		return &FieldError{Field: prefix + "network", Value: p.Network, Rule: "must be host or private"}
	}
	if p.LogLevel != "" && !slices.Contains(logLevels, p.LogLevel) {
		return &FieldError{Field: prefix + "log_level", Value: p.LogLevel, Rule: "must be one of " + strings.Join(logLevels, ", ")}
	}
	return nil
}

// validateLiveness checks the liveness keys: the interval no shorter than
// the timer that runs the check, the timeout shorter than the interval.
func (p Processor) validateLiveness(prefix string) error {
	if p.LivenessFailures < 0 || p.LivenessFailures > MaxLivenessFailures {
		return &FieldError{Field: prefix + "liveness_failures", Value: strconv.Itoa(p.LivenessFailures), Rule: fmt.Sprintf("must be 0 (off) to %d", MaxLivenessFailures)}
	}
	if err := positiveSeconds(prefix+"liveness_interval", p.LivenessInterval); err != nil {
		return err
	}
	if p.LivenessInterval < MinLivenessInterval {
		return &FieldError{Field: prefix + "liveness_interval", Value: formatFloat(p.LivenessInterval), Rule: fmt.Sprintf("must be at least %d seconds, the period of kato-liveness.timer", MinLivenessInterval)}
	}
	if err := positiveSeconds(prefix+"liveness_timeout", p.LivenessTimeout); err != nil {
		return err
	}
	if p.LivenessTimeout >= p.LivenessInterval {
		return &FieldError{Field: prefix + "liveness_timeout", Value: formatFloat(p.LivenessTimeout), Rule: "must be shorter than liveness_interval (" + formatFloat(p.LivenessInterval) + " s)"}
	}
	return nil
}

// processorNameRule returns the rule name breaks as the name of a
// [processors.NAME] section, or "": what an instance id may be, shorter.
func processorNameRule(name string) string {
	if name == DefaultProcessor {
		return "is the name of [processor]; choose another"
	}
	if name == "" || len(name) > 32 {
		return "must be 1 to 32 characters long"
	}
	if err := ValidateID(name); err != nil {
		return "must contain only letters, digits, '-' and '_'"
	}
	return ""
}

// Batch configures apply and the group commands.
type Batch struct {
	// Parallel bounds how many instances start at once; 0 means
	// supervisor.DefaultParallel.
	Parallel int `toml:"parallel"`
}

// MaxParallel bounds batch.parallel and --parallel.
const MaxParallel = 1024

// Ports are the ranges automatic port allocation draws from. The API and ZMQ
// ranges must not overlap.
type Ports struct {
	APIStart int `toml:"api_start"`
	APIEnd   int `toml:"api_end"`
	ZMQStart int `toml:"zmq_start"`
	ZMQEnd   int `toml:"zmq_end"`
}

// Services are the shared services every instance depends on.
type Services struct {
	Units    []string `toml:"units"`     // systemd units started before any instance
	MongoURL string   `toml:"mongo_url"` // MongoDB the processors store their state in
	// Links are other shared services, by name, as host:port. An instance
	// on a private network reaches each on 127.0.0.1 at the same port
	// inside its namespace, as it reaches MongoDB.
	Links map[string]string `toml:"links"`
}

// Link is a shared service an instance on a private network reaches
// through a socket inside its namespace: Port on 127.0.0.1 there is
// forwarded to Address on the host's network.
type Link struct {
	Name    string // [a-z0-9-], e.g. mongo
	Port    int    // port inside the namespace
	Address string // host:port the host side connects to
}

// PrivateLinks returns the shared services an instance on a private network needs
// forwarded into its namespace: MongoDB (named "mongo") first, then
// services.links by name.
func (s Services) PrivateLinks() ([]Link, error) {
	host, port, err := mongoHostPort(s.MongoURL)
	if err != nil {
		return nil, err
	}
	links := []Link{{Name: "mongo", Port: port, Address: net.JoinHostPort(host, strconv.Itoa(port))}}
	names := make([]string, 0, len(s.Links))
	for n := range s.Links {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		_, p, _ := net.SplitHostPort(s.Links[n])
		port, _ := strconv.Atoi(p)
		links = append(links, Link{Name: n, Port: port, Address: s.Links[n]})
	}
	return links, nil
}

// PrivateMongoURL is services.mongo_url as an instance on a private network
// uses it: its host replaced by 127.0.0.1, where the link listens.
func (s Services) PrivateMongoURL() (string, error) {
	if _, _, err := mongoHostPort(s.MongoURL); err != nil {
		return "", err
	}
	u, _ := url.Parse(s.MongoURL)
	u.Host = net.JoinHostPort("127.0.0.1", portOf(u))
	return u.String(), nil
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return "27017"
}

// mongoHostPort returns the one host and port of a mongodb:// URL; a
// private network can forward only that.
func mongoHostPort(s string) (string, int, error) {
	const rule = "must be a mongodb:// URL with one host for an instance on a private network"
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "mongodb" || u.Host == "" || strings.Contains(u.Host, ",") {
		return "", 0, &FieldError{Field: "services.mongo_url", Value: s, Rule: rule}
	}
	port, err := strconv.Atoi(portOf(u))
	if err != nil || !units.ValidPort(port) {
		return "", 0, &FieldError{Field: "services.mongo_url", Value: s, Rule: rule}
	}
	return u.Hostname(), port, nil
}

// KG configures the KG worker pool. Every field can be overridden by the
// environment variable named in its comment (see ApplyEnv).
type KG struct {
	NumWorkers     int     `toml:"num_workers"`     // KG_NUM_WORKERS, 1..64
	PollInterval   float64 `toml:"poll_interval"`   // KG_POLL_INTERVAL, seconds
	ServiceEnabled bool    `toml:"service_enabled"` // KG_SERVICE_ENABLED
	ServiceURL     string  `toml:"service_url"`     // KG_SERVICE_URL, http or https
	ServiceTimeout float64 `toml:"service_timeout"` // KG_SERVICE_TIMEOUT, seconds
	MaxRetries     int     `toml:"max_retries"`     // KG_MAX_RETRIES, >= 0
	BatchSize      int     `toml:"batch_size"`      // KG_BATCH_SIZE, 1..1000
	Concurrency    int     `toml:"concurrency"`     // KG_CONCURRENCY, 1..64, documents in flight per worker
	LeaseSeconds   float64 `toml:"lease_seconds"`   // KG_LEASE_SECONDS
	DBPath         string  `toml:"db_path"`         // DB_PATH, absolute
	// DBURL, when set, puts the queue in that PostgreSQL database instead
	// of the SQLite file at DBPath, for workers on many hosts.
	DBURL string `toml:"db_url"` // KG_DB_URL, postgres:// or postgresql://
}

// Database is where the queue lives, as kgdb.Open takes it: the
// PostgreSQL URL db_url when set, else the SQLite file db_path.
func (k *KG) Database() string {
	if k.DBURL != "" {
		return k.DBURL
	}
	return k.DBPath
}

// DatabaseForDisplay is Database with any password redacted.
func (k *KG) DatabaseForDisplay() string {
	if k.DBURL != "" {
		return RedactURL(k.DBURL)
	}
	return k.DBPath
}

// Default returns the configuration used when /etc/kato/kato.toml is absent.
func Default() *Config {
	return &Config{
		Processor: Processor{
			Command:      []string{"/usr/bin/python3", "-m", "kato.services.kato_fastapi"},
			Generation:   "b",
			Ready:        "GET /health",
			ReadyTimeout: 60,
			StopTimeout:  3,
			Network:      NetworkHost,
			// Generation B: the liveness check is off.
			LivenessInterval: DefaultLivenessInterval,
			LivenessTimeout:  DefaultLivenessTimeout,
		},
		Defaults: DefaultParameters(),
		Ports: Ports{
			APIStart: 8000,
			APIEnd:   8999,
			ZMQStart: 5555,
			ZMQEnd:   6554,
		},
		Services: Services{
			Units:    []string{"mongod.service"},
			MongoURL: "mongodb://localhost:27017",
			Links:    map[string]string{},
		},
		KG: KG{
			NumWorkers:     1,
			PollInterval:   5,
			ServiceEnabled: true,
			ServiceURL:     "http://localhost:8088",
			ServiceTimeout: 1800,
			MaxRetries:     3,
			BatchSize:      5,
			Concurrency:    1,
			LeaseSeconds:   60,
			DBPath:         DefaultKGDBPath,
		},
		Limits: DefaultLimits(),
	}
}

// Seconds converts a setting given in seconds, such as KG.PollInterval, to a
// time.Duration.
func Seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

// Load reads the configuration file at path. A missing file yields Default().
// Keys absent from the file keep their defaults; unknown keys, malformed TOML
// and invalid values are errors naming the file and, where known, the line.
func Load(path string) (*Config, error) {
	return load(path, Default())
}

// load reads the file at path over the defaults c.
func load(path string, c *Config) (*Config, error) {
	c.Path = path
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	// [defaults] is decoded on its own, so that it is merged over the
	// built-in values with old names renamed.
	var raw struct {
		Defaults  map[string]any            `toml:"defaults"`
		Templates map[string]map[string]any `toml:"templates"`
	}
	c.Defaults = nil
	md, err := toml.Decode(string(data), c)
	if err == nil {
		_, err = toml.Decode(string(data), &raw)
	}
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, malformed(tomlError(err)))
	}
	// [templates] is read by the rules of a fleet file's templates.
	undecoded := slices.DeleteFunc(md.Undecoded(), func(k toml.Key) bool { return k[0] == "templates" })
	if len(undecoded) > 0 {
		return nil, fmt.Errorf("load config %s: %s%w", path, linePrefix(data, undecoded[0]), malformed(unknownKeyError(undecoded[0])))
	}
	if c.Templates, err = configTemplates(path, data, raw.Templates); err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, malformed(err))
	}
	if c.Defaults, err = DefaultParameters().Merge(raw.Defaults); err != nil {
		err = prefixField("defaults.", err)
		return nil, fmt.Errorf("load config %s: %s%w", path, linePrefix(data, fieldKey(err)), malformed(err))
	}
	if c.Processor.LogLevel != "" && !md.IsDefined("defaults", "log_level") {
		c.Defaults["log_level"] = c.Processor.LogLevel
	}
	c.Processor.fill(func(key string) bool { return md.IsDefined("processor", key) })
	for name, p := range c.Processors {
		p.fill(func(key string) bool { return md.IsDefined("processors", name, key) })
		c.Processors[name] = p
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("load config %s: %s%w", path, linePrefix(data, fieldKey(err)), malformed(err))
	}
	return c, nil
}

// fieldKey returns the TOML key path of the *FieldError in err's chain, or nil.
func fieldKey(err error) toml.Key {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return nil
	}
	return strings.Split(fe.Field, ".")
}

// Validate reports the first setting that breaks its rule as a *FieldError
// named by its TOML key path, e.g. `invalid ports.api_start 0: must be between
// 1 and 65535`.
func (c *Config) Validate() error {
	if err := c.Processor.validate("processor."); err != nil {
		return err
	}
	names := make([]string, 0, len(c.Processors))
	for name := range c.Processors {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if rule := processorNameRule(name); rule != "" {
			return &FieldError{Field: "processors", Value: name, Rule: "name " + rule}
		}
		p := c.Processors[name]
		if p.LogLevel != "" {
			return &FieldError{Field: "processors." + name + ".log_level", Value: p.LogLevel, Rule: "is not a processor key; set defaults.log_level or start --log-level"}
		}
		if err := p.validate("processors." + name + "."); err != nil {
			return err
		}
	}
	if err := c.Defaults.Validate(); err != nil {
		return prefixField("defaults.", err)
	}
	if err := c.Ports.validate(); err != nil {
		return err
	}
	if err := c.Stores.validate(); err != nil {
		return err
	}
	if err := c.Services.validate(); err != nil {
		return err
	}
	if err := intBetween("batch.parallel", c.Batch.Parallel, 0, MaxParallel); err != nil {
		return err
	}
	if err := c.validateGroups(); err != nil {
		return err
	}
	for _, s := range kgSettings {
		if err := s.check(&c.KG, "kg."+s.key); err != nil {
			return err
		}
	}
	return c.Limits.validate()
}

// logLevels are the levels the KATO processor accepts.
var logLevels = []string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

// prefixField returns err with the Field of its *FieldError prefixed, leaving
// other errors alone.
func prefixField(prefix string, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	return &FieldError{Field: prefix + fe.Field, Value: fe.Value, Rule: fe.Rule}
}

// validateCommand checks a processor argv: non-empty, an absolute program
// path, and no control characters, which a unit's ExecStart cannot carry.
func validateCommand(field string, argv []string) error {
	if len(argv) == 0 {
		return &FieldError{Field: field, Value: "[]", Rule: "must name the processor program"}
	}
	if !filepath.IsAbs(argv[0]) {
		return &FieldError{Field: field, Value: argv[0], Rule: "must start with an absolute program path"}
	}
	for _, arg := range argv {
		if hasControl(arg) {
			return &FieldError{Field: field, Value: arg, Rule: "must not contain control characters"}
		}
	}
	return nil
}

func (p Ports) validate() error {
	for _, f := range []struct {
		key string
		v   int
	}{
		{"ports.api_start", p.APIStart},
		{"ports.api_end", p.APIEnd},
		{"ports.zmq_start", p.ZMQStart},
		{"ports.zmq_end", p.ZMQEnd},
	} {
		if err := checkPort(f.key, f.v); err != nil {
			return err
		}
	}
	if p.APIEnd < p.APIStart {
		return &FieldError{Field: "ports.api_end", Value: strconv.Itoa(p.APIEnd), Rule: fmt.Sprintf("must not be below ports.api_start %d", p.APIStart)}
	}
	if p.ZMQEnd < p.ZMQStart {
		return &FieldError{Field: "ports.zmq_end", Value: strconv.Itoa(p.ZMQEnd), Rule: fmt.Sprintf("must not be below ports.zmq_start %d", p.ZMQStart)}
	}
	if p.ZMQStart <= p.APIEnd && p.APIStart <= p.ZMQEnd {
		return &FieldError{
			Field: "ports.zmq_start",
			Value: strconv.Itoa(p.ZMQStart),
			Rule:  fmt.Sprintf("zmq range %d-%d must not overlap api range %d-%d", p.ZMQStart, p.ZMQEnd, p.APIStart, p.APIEnd),
		}
	}
	return nil
}

func (s Services) validate() error {
	for i, u := range s.Units {
		if rule := unitNameRule(u); rule != "" {
			return &FieldError{Field: "services.units", Value: u, Rule: rule}
		}
		if slices.Contains(s.Units[:i], u) {
			return &FieldError{Field: "services.units", Value: u, Rule: "must not be listed twice"}
		}
	}
	if !validMongoURL(s.MongoURL) {
		return &FieldError{Field: "services.mongo_url", Value: RedactURL(s.MongoURL), Rule: "must be a mongodb:// or mongodb+srv:// connection string"}
	}
	for name, addr := range s.Links {
		if rule := linkNameRule(name); rule != "" {
			return &FieldError{Field: "services.links", Value: name, Rule: "name " + rule}
		}
		host, p, err := net.SplitHostPort(addr)
		port, perr := strconv.Atoi(p)
		if err != nil || host == "" || perr != nil || !units.ValidPort(port) || hasControl(addr) {
			return &FieldError{Field: "services.links." + name, Value: addr, Rule: "must be host:port"}
		}
	}
	return nil
}

// unitSuffixes are the systemd unit types a shared service can be.
var unitSuffixes = []string{
	".service", ".socket", ".device", ".mount", ".automount", ".swap",
	".target", ".path", ".timer", ".slice", ".scope",
}

// maxUnitName is systemd's limit on the length of a unit name.
const maxUnitName = 255

// unitNameRule returns the rule name breaks as a systemd unit name that can
// be depended on, or "" when it is valid.
func unitNameRule(name string) string {
	const rule = "must be a systemd unit name of letters, digits and :-_.\\@ ending in a unit type such as .service"
	if len(name) > maxUnitName {
		return fmt.Sprintf("must be at most %d characters long", maxUnitName)
	}
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || !slices.Contains(unitSuffixes, name[i:]) {
		return rule
	}
	prefix := name[:i]
	for j := 0; j < len(prefix); j++ {
		c := prefix[j]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strings.IndexByte(":-_.\\@", c) >= 0 {
			continue
		}
		return rule
	}
	if at := strings.IndexByte(prefix, '@'); at >= 0 {
		if at == 0 || strings.Count(prefix, "@") > 1 {
			return rule
		}
		if at == len(prefix)-1 {
			return "must name a template instance, e.g. foo@bar.service"
		}
	}
	return ""
}

// linkNameRule returns the rule a shared service's name breaks, or "": it
// becomes part of unit names.
func linkNameRule(name string) string {
	if name == "mongo" {
		return "is taken by services.mongo_url"
	}
	if name == "" || len(name) > 32 {
		return "must be 1 to 32 characters long"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "must contain only lower-case letters, digits and '-'"
		}
	}
	return ""
}

func validMongoURL(s string) bool {
	rest, ok := strings.CutPrefix(s, "mongodb://")
	if !ok {
		rest, ok = strings.CutPrefix(s, "mongodb+srv://")
	}
	return ok && rest != "" && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

// kgSetting ties a [kg] key to its environment variable, its parser and its
// rule, so that the file and the environment are checked alike.
type kgSetting struct {
	key   string
	env   string
	set   func(k *KG, s string) (rule string)
	check func(k *KG, field string) error
}

var kgSettings = []kgSetting{
	{
		key:   "num_workers",
		env:   "KG_NUM_WORKERS",
		set:   setInt(func(k *KG) *int { return &k.NumWorkers }),
		check: func(k *KG, f string) error { return intBetween(f, k.NumWorkers, 1, MaxWorkers) },
	},
	{
		key:   "poll_interval",
		env:   "KG_POLL_INTERVAL",
		set:   setFloat(func(k *KG) *float64 { return &k.PollInterval }),
		check: func(k *KG, f string) error { return secondsUpTo(f, k.PollInterval, 0.01, maxPollInterval) },
	},
	{
		key: "service_enabled",
		env: "KG_SERVICE_ENABLED",
		set: func(k *KG, s string) string {
			switch strings.ToLower(s) {
			case "true", "1", "yes":
				k.ServiceEnabled = true
			case "false", "0", "no":
				k.ServiceEnabled = false
			default:
				return "must be one of true, false, 1, 0, yes, no"
			}
			return ""
		},
		check: func(*KG, string) error { return nil },
	},
	{
		key:   "service_url",
		env:   "KG_SERVICE_URL",
		set:   func(k *KG, s string) string { k.ServiceURL = s; return "" },
		check: func(k *KG, f string) error { return checkHTTPURL(f, k.ServiceURL) },
	},
	{
		key:   "service_timeout",
		env:   "KG_SERVICE_TIMEOUT",
		set:   setFloat(func(k *KG) *float64 { return &k.ServiceTimeout }),
		check: func(k *KG, f string) error { return secondsUpTo(f, k.ServiceTimeout, 1, maxServiceTimeout) },
	},
	{
		key:   "max_retries",
		env:   "KG_MAX_RETRIES",
		set:   setInt(func(k *KG) *int { return &k.MaxRetries }),
		check: func(k *KG, f string) error { return intBetween(f, k.MaxRetries, 0, maxMaxRetries) },
	},
	{
		key:   "batch_size",
		env:   "KG_BATCH_SIZE",
		set:   setInt(func(k *KG) *int { return &k.BatchSize }),
		check: func(k *KG, f string) error { return intBetween(f, k.BatchSize, 1, 1000) },
	},
	{
		key:   "concurrency",
		env:   "KG_CONCURRENCY",
		set:   setInt(func(k *KG) *int { return &k.Concurrency }),
		check: func(k *KG, f string) error { return intBetween(f, k.Concurrency, 1, maxConcurrency) },
	},
	{
		key:   "lease_seconds",
		env:   "KG_LEASE_SECONDS",
		set:   setFloat(func(k *KG) *float64 { return &k.LeaseSeconds }),
		check: func(k *KG, f string) error { return secondsUpTo(f, k.LeaseSeconds, 1, maxLeaseSeconds) },
	},
	{
		key: "db_path",
		env: "DB_PATH",
		set: func(k *KG, s string) string { k.DBPath = s; return "" },
		check: func(k *KG, f string) error {
			if !filepath.IsAbs(k.DBPath) || hasControl(k.DBPath) {
				return &FieldError{Field: f, Value: k.DBPath, Rule: "must be an absolute path"}
			}
			return nil
		},
	},
	{
		key:   "db_url",
		env:   "KG_DB_URL",
		set:   func(k *KG, s string) string { k.DBURL = s; return "" },
		check: func(k *KG, f string) error { return checkPostgresURL(f, k.DBURL) },
	},
}

// checkPostgresURL accepts "" (the SQLite file) or a postgres:// or
// postgresql:// URL naming a database; the error shows the URL with its
// password redacted.
func checkPostgresURL(field, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Opaque != "" || hasControl(s) ||
		strings.ContainsFunc(s, unicode.IsSpace) || strings.Trim(u.Path, "/") == "" {
		return &FieldError{Field: field, Value: RedactURL(s), Rule: "must be a postgres:// or postgresql:// URL naming a database (postgres://USER:PASSWORD@HOST:PORT/DATABASE), or empty for the SQLite file at kg.db_path"}
	}
	return nil
}

// The bounds of the [kg] settings. A value past them is a mistake (a unit
// typed wrong, an exponent too many) that would make the workers sleep for
// years or overflow a duration, so it is refused where it is read.
const (
	maxPollInterval   = 3600      // an hour between looks at an idle queue
	maxServiceTimeout = 24 * 3600 // a day for one document
	maxLeaseSeconds   = 24 * 3600
	maxMaxRetries     = 100
	maxConcurrency    = 64
)

// MaxWorkers is the most KG workers a pool runs (kg.num_workers, `workers
// start` and `workers scale`).
const MaxWorkers = 64

// secondsUpTo checks that v is a number of seconds from lo to hi: NaN, the
// infinities, zero and negative numbers are refused with the bound broken.
func secondsUpTo(field string, v, lo, hi float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < lo || v > hi {
		return &FieldError{Field: field, Value: formatFloat(v), Rule: fmt.Sprintf("must be a number of seconds from %s to %s", formatFloat(lo), formatFloat(hi))}
	}
	return nil
}

// CheckKG checks the [kg] setting key of k by the rule kato.toml and the
// environment use, naming field in the error: the one validation for the
// command line, the file, the environment and the worker.
func CheckKG(key, field string, k *KG) error {
	for _, s := range kgSettings {
		if s.key == key {
			return s.check(k, field)
		}
	}
	return fmt.Errorf("unknown kg setting %q", key)
}

func setInt(field func(*KG) *int) func(*KG, string) string {
	return func(k *KG, s string) string {
		v, err := strconv.Atoi(s)
		if err != nil {
			return "must be an integer"
		}
		*field(k) = v
		return ""
	}
}

func setFloat(field func(*KG) *float64) func(*KG, string) string {
	return func(k *KG, s string) string {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return "must be a number"
		}
		*field(k) = v
		return ""
	}
}

func checkHTTPURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return &FieldError{Field: field, Value: RedactURL(s), Rule: "must be an absolute http or https URL"}
	}
	return nil
}

// ApplyEnv overrides [kg] settings from the environment variables KG_NUM_WORKERS,
// KG_POLL_INTERVAL, KG_SERVICE_ENABLED, KG_SERVICE_URL, KG_SERVICE_TIMEOUT,
// KG_MAX_RETRIES, KG_BATCH_SIZE, KG_CONCURRENCY, KG_LEASE_SECONDS, DB_PATH and KG_DB_URL, read through
// getenv (os.Getenv in production). Unset or empty variables change nothing.
// A bad value is a *FieldError naming the variable; c is then left unchanged.
// The whole configuration is validated afterwards.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	kg := c.KG
	for _, s := range kgSettings {
		raw := strings.TrimSpace(getenv(s.env))
		if raw == "" {
			continue
		}
		if rule := s.set(&kg, raw); rule != "" {
			return &FieldError{Field: s.env, Value: raw, Rule: rule}
		}
		if err := s.check(&kg, s.env); err != nil {
			return err
		}
	}
	c.KG = kg
	return c.Validate()
}
