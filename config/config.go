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
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
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
	Path      string     `toml:"-"` // file it was loaded from
	Processor Processor  `toml:"processor"`
	Defaults  Parameters `toml:"defaults"`
	Ports     Ports      `toml:"ports"`
	Services  Services   `toml:"services"`
	KG        KG         `toml:"kg"`
	Limits    Limits     `toml:"limits"`
}

// Processor describes how to run the KATO processor program.
type Processor struct {
	Command      []string `toml:"command"`       // argv; Command[0] is an absolute path
	LogLevel     string   `toml:"log_level"`     // DEBUG, INFO, WARNING, ERROR or CRITICAL
	ReadyTimeout float64  `toml:"ready_timeout"` // seconds to wait for the API port after start
}

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
}

// Default returns the configuration used when /etc/kato/kato.toml is absent.
func Default() *Config {
	return &Config{
		Processor: Processor{
			Command:      []string{"/usr/bin/python3", "-m", "kato.services.kato_fastapi"},
			LogLevel:     "INFO",
			ReadyTimeout: 60,
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
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, malformed(tomlError(err)))
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return nil, fmt.Errorf("load config %s: %sunknown key %s%w", path, linePrefix(data, undecoded[0]), undecoded[0], malformed(nil))
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
	if err := validateCommand("processor.command", c.Processor.Command); err != nil {
		return err
	}
	if !slices.Contains(logLevels, c.Processor.LogLevel) {
		return &FieldError{Field: "processor.log_level", Value: c.Processor.LogLevel, Rule: "must be one of " + strings.Join(logLevels, ", ")}
	}
	if err := positiveSeconds("processor.ready_timeout", c.Processor.ReadyTimeout); err != nil {
		return err
	}
	if err := c.Defaults.Validate(); err != nil {
		return prefixField("defaults.", err)
	}
	if err := c.Ports.validate(); err != nil {
		return err
	}
	if err := c.Services.validate(); err != nil {
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
		if err := intBetween(f.key, f.v, 1, 65535); err != nil {
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
		check: func(k *KG, f string) error { return intBetween(f, k.NumWorkers, 1, 64) },
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
// KG_MAX_RETRIES, KG_BATCH_SIZE, KG_CONCURRENCY, KG_LEASE_SECONDS and DB_PATH, read through
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
