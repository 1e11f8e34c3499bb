package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/kato-manager/kato-manager/internal/atomicfile"
	"github.com/kato-manager/kato-manager/internal/suggest"
	"github.com/kato-manager/kato-manager/units"
)

// Sentinel errors of Registry.Find; check them with errors.Is.
var (
	// ErrNotFound means no instance has the given id or name.
	ErrNotFound = errors.New("instance not found")
	// ErrAmbiguous means a name is shared by several instances.
	ErrAmbiguous = errors.New("ambiguous instance name")
	// ErrMalformed marks a configuration or registry file that cannot be
	// used as it is: the file is at fault, not the command line.
	ErrMalformed = errors.New("malformed file")
)

// Instance is one registered KATO processor instance.
type Instance struct {
	ID      string `toml:"-"` // the key of the registry entry
	Name    string `toml:"name"`
	Unit    string `toml:"unit"` // units.InstanceUnit(ID)
	APIPort int    `toml:"api_port"`
	// ZMQPort is generation A's engine port; 0 for a processor without
	// one (generation B serves HTTP only).
	ZMQPort int      `toml:"zmq_port,omitempty"`
	Command []string `toml:"command,omitempty"` // processor command override; empty means the processor's
	// Processor names the processor of kato.toml the instance runs; ""
	// is [processor], shown as DefaultProcessor.
	Processor string `toml:"processor,omitempty"`
	// Network is NetworkHost or NetworkPrivate; entries written before it
	// existed ran on the host network.
	Network string `toml:"network"`
	// Group is the group the instance is part of (units.GroupTarget), or
	// "".
	Group string `toml:"group,omitempty"`
	// Weight is the instance's share of its group's requests at the
	// group's front against the other members' weights, 1 to 256; 0 is 1.
	Weight     int        `toml:"weight,omitzero"`
	Parameters Parameters `toml:"parameters"`
	Created    time.Time  `toml:"created"`
	Updated    time.Time  `toml:"updated"`
}

// Validate reports the first field of in that breaks its rule as a *FieldError
// named by its TOML key within the entry, e.g. "api_port".
func (in *Instance) Validate() error {
	if err := ValidateID(in.ID); err != nil {
		return err
	}
	if err := ValidateName(in.Name); err != nil {
		return err
	}
	if want := units.InstanceUnit(in.ID); in.Unit != want {
		return &FieldError{Field: "unit", Value: in.Unit, Rule: "must be " + want}
	}
	if err := checkPort("api_port", in.APIPort); err != nil {
		return err
	}
	// 0 is no engine port, for a processor without one.
	if in.ZMQPort != 0 && !units.ValidPort(in.ZMQPort) {
		return &FieldError{Field: "zmq_port", Value: strconv.Itoa(in.ZMQPort), Rule: fmt.Sprintf("must be between 0 and %d", units.MaxPort)}
	}
	if in.ZMQPort == in.APIPort {
		return &FieldError{Field: "zmq_port", Value: strconv.Itoa(in.ZMQPort), Rule: "must differ from api_port"}
	}
	if len(in.Command) > 0 {
		if err := validateCommand("command", in.Command); err != nil {
			return err
		}
	}
	if in.Processor != "" {
		if rule := processorNameRule(in.Processor); rule != "" {
			return &FieldError{Field: "processor", Value: in.Processor, Rule: rule}
		}
	}
	if in.Network != NetworkHost && in.Network != NetworkPrivate {
		return &FieldError{Field: "network", Value: in.Network, Rule: "must be host or private"}
	}
	if in.Group != "" {
		if rule := units.GroupNameRule(in.Group); rule != "" {
			return &FieldError{Field: "group", Value: in.Group, Rule: rule}
		}
	}
	if in.Weight != 0 {
		if in.Weight < 1 || in.Weight > MaxWeight {
			return &FieldError{Field: "weight", Value: strconv.Itoa(in.Weight), Rule: WeightRule}
		}
		if in.Group == "" {
			return &FieldError{Field: "weight", Value: strconv.Itoa(in.Weight), Rule: "goes with a group: it is a share of the group's requests"}
		}
	}
	if err := in.Parameters.Validate(); err != nil {
		return prefixField("parameters.", err)
	}
	if in.Created.IsZero() {
		return &FieldError{Field: "created", Value: in.Created.Format(time.RFC3339), Rule: "must be set"}
	}
	if in.Updated.IsZero() {
		return &FieldError{Field: "updated", Value: in.Updated.Format(time.RFC3339), Rule: "must be set"}
	}
	return nil
}

// Registry is the set of instances kato-manager has started, keyed by ID. Its
// file holds one [instances.ID] table per instance.
type Registry struct {
	Instances map[string]*Instance `toml:"instances"`
	// Groups are the groups an applied fleet file declared (its groups:),
	// which win over kato.toml's [groups.NAME] of the same name.
	Groups map[string]Group `toml:"groups,omitempty"`
	// RemoteMembers are the members, by id, of this host's fronts that run
	// on other hosts, as the last apply of a fleet file naming those hosts
	// found them.
	RemoteMembers map[string]RemoteMember `toml:"remote_members,omitempty"`
}

// Group returns the settings of the group name: an applied fleet file's,
// else those of cfg, and whether there are any.
func (r *Registry) Group(cfg *Config, name string) (Group, bool) {
	if g, ok := r.Groups[name]; ok {
		return g, true
	}
	return cfg.GroupNamed(name)
}

// GroupNames returns the names of the groups of cfg and r, sorted.
func (r *Registry) GroupNames(cfg *Config) []string {
	var names []string
	for n := range cfg.Groups {
		names = append(names, n)
	}
	for n := range r.Groups {
		if _, ok := cfg.Groups[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Sorted returns the instances ordered by ID.
func (r *Registry) Sorted() []*Instance {
	out := make([]*Instance, 0, len(r.Instances))
	for _, id := range r.ids() {
		out = append(out, r.Instances[id])
	}
	return out
}

// ProcessorShown is the name of the instance's processor as list, status
// and start show it: DefaultProcessor for [processor].
func (in *Instance) ProcessorShown() string {
	if in.Processor == "" {
		return DefaultProcessor
	}
	return in.Processor
}

// ByName returns the IDs of each instance name, in ID order; instances
// without a name are left out.
func (r *Registry) ByName() map[string][]string {
	ids := map[string][]string{}
	for _, in := range r.Sorted() {
		if in.Name != "" {
			ids[in.Name] = append(ids[in.Name], in.ID)
		}
	}
	return ids
}

// MemberGroups returns the groups the registered instances are in, sorted.
func (r *Registry) MemberGroups() []string {
	var names []string
	for _, in := range r.Instances {
		if in.Group != "" && !slices.Contains(names, in.Group) {
			names = append(names, in.Group)
		}
	}
	slices.Sort(names)
	return names
}

func (r *Registry) ids() []string {
	ids := make([]string, 0, len(r.Instances))
	for id := range r.Instances {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Find returns the instance whose ID is ref or, failing that, the only one
// whose Name is ref. It returns an error wrapping ErrNotFound, with the IDs
// and names nearest to ref, when nothing matches and ErrAmbiguous, listing
// the candidates' IDs, when several names do.
func (r *Registry) Find(ref string) (*Instance, error) {
	if in, ok := r.Instances[ref]; ok {
		return in, nil
	}
	in, err := r.pick(ref, func(in *Instance) bool { return in.Name == ref })
	if in == nil && err == nil {
		return nil, r.notFound(ref)
	}
	return in, err
}

// Match is Find for what a person types: an exact ID or name wins; else the
// only instance whose name begins with ref, else the only one whose name
// contains it, case ignored. Several at the first step that finds any are
// ErrAmbiguous, listing them; none is ErrNotFound, with the nearest IDs and
// names. Programs that act on an instance they were given by ID use Find.
func (r *Registry) Match(ref string) (*Instance, error) {
	in, err := r.Find(ref)
	if !errors.Is(err, ErrNotFound) || ref == "" {
		return in, err
	}
	lower := strings.ToLower(ref)
	for _, part := range []func(string, string) bool{strings.HasPrefix, strings.Contains} {
		in, err := r.pick(ref, func(in *Instance) bool { return part(strings.ToLower(in.Name), lower) })
		if in != nil || err != nil {
			return in, err
		}
	}
	return nil, err
}

// pick returns the one instance that matches, nil when none does and
// ErrAmbiguous, listing the candidates, when several do.
func (r *Registry) pick(ref string, match func(*Instance) bool) (*Instance, error) {
	var matches []*Instance
	for _, in := range r.Sorted() {
		if match(in) {
			matches = append(matches, in)
		}
	}
	switch len(matches) {
	case 0:
		return nil, nil
	case 1:
		return matches[0], nil
	}
	ids := make([]string, len(matches))
	for i, in := range matches {
		ids[i] = in.ID
		if in.Name != ref {
			ids[i] += " (" + in.Name + ")"
		}
	}
	return nil, fmt.Errorf("%w %q: used by instances %s; give an id instead", ErrAmbiguous, ref, strings.Join(ids, ", "))
}

// notFound is the ErrNotFound error for ref, with the IDs and names it is
// nearest to.
func (r *Registry) notFound(ref string) error {
	known := make([]string, 0, 2*len(r.Instances))
	for _, in := range r.Sorted() {
		known = append(known, in.ID, in.Name)
	}
	hint := ""
	if near := suggest.DidYouMean(ref, known); near != "" {
		hint = "; " + near
	}
	return fmt.Errorf("no instance with id or name %q%s; run `kato-manager list`: %w", ref, hint, ErrNotFound)
}

// ReservedPorts maps every API and ZMQ port held by an instance to its ID.
func (r *Registry) ReservedPorts() map[int]string {
	ports := make(map[int]string, 2*len(r.Instances))
	for id, in := range r.Instances {
		ports[in.APIPort] = id
		if in.ZMQPort != 0 {
			ports[in.ZMQPort] = id
		}
	}
	return ports
}

// Validate reports the first invalid entry as a *FieldError named by its key
// path, e.g. "instances.web.api_port"; a port may be held by one instance
// only, whether as its API or its ZMQ port.
func (r *Registry) Validate() error {
	_, err := r.validate()
	return err
}

// validate is Validate that also returns the TOML key path of the offending
// entry, so that errors about a file can name the line.
func (r *Registry) validate() (toml.Key, error) {
	owners := make(map[int]string)
	for _, id := range r.ids() {
		in := r.Instances[id]
		entry := toml.Key{"instances", id}
		if err := ValidateID(id); err != nil {
			var fe *FieldError
			errors.As(err, &fe)
			return entry, &FieldError{Field: "instances", Value: id, Rule: "id " + fe.Rule}
		}
		if in == nil {
			return entry, &FieldError{Field: entry.String(), Value: "nil", Rule: "must hold an instance"}
		}
		if in.ID != id {
			return entry, &FieldError{Field: entry.String(), Value: in.ID, Rule: "must hold the instance with id " + id}
		}
		if err := in.Validate(); err != nil {
			return fieldPath(entry, err), prefixField(entry.String()+".", err)
		}
		for _, p := range []struct {
			key  string
			port int
		}{{"api_port", in.APIPort}, {"zmq_port", in.ZMQPort}} {
			if p.port == 0 {
				continue
			}
			if owner, taken := owners[p.port]; taken {
				key := append(slices.Clone(entry), p.key)
				return key, &FieldError{Field: key.String(), Value: strconv.Itoa(p.port), Rule: "already used by instance " + owner}
			}
			owners[p.port] = id
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.RemoteMembers)) {
		key := toml.Key{"remote_members", id}
		if err := ValidateID(id); err != nil {
			return key, &FieldError{Field: "remote_members", Value: id, Rule: "id must be an instance id"}
		}
		if _, ok := r.Instances[id]; ok {
			return key, &FieldError{Field: key.String(), Value: id, Rule: "must not be the id of an instance of this host"}
		}
		if err := r.RemoteMembers[id].Validate(); err != nil {
			return fieldPath(key, err), prefixField(key.String()+".", err)
		}
	}
	return nil, nil
}

// fieldPath appends the Field of err's *FieldError to entry.
func fieldPath(entry toml.Key, err error) toml.Key {
	return append(slices.Clone(entry), fieldKey(err)...)
}

// RegistryFile is the registry on disk. Writers hold a lock alone, so an
// Update is never lost to a concurrent one, even from another process;
// readers take none, as every write replaces the file atomically. The lock
// files are 0600 and owned by the writer, so no other user can hold them.
type RegistryFile struct {
	Path string
	// LockTimeout bounds every wait for a lock; zero means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// OnLockWait, when set, is called once when a lock is not free at once,
	// with the lock file and a description of its holder, so that a
	// command can say what it waits for.
	OnLockWait func(lockPath, holder string)

	// parsed is the registry last read, kept for Load while the file is
	// the same one (see fileKey): a long-running reader such as serve
	// parses it once per change rather than once per look.
	parsed atomic.Pointer[parsedRegistry]
}

// parsedRegistry is a registry as read from the file that fileKey names.
type parsedRegistry struct {
	key fileKey
	reg *Registry
}

// fileKey tells one version of the registry file from another. Writers
// replace the file by a rename, so a new version is a new inode, and its
// change time and size are compared as well.
type fileKey struct {
	dev, ino     uint64
	size         int64
	ctime, mtime int64
}

func keyOf(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec, mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec}, true
}

// clone returns a copy of r that shares nothing with it. A field added to
// Registry must be copied here (TestRegistryCloneCopiesEveryField).
func (r *Registry) clone() *Registry {
	c := &Registry{Instances: make(map[string]*Instance, len(r.Instances))}
	for id, in := range r.Instances {
		cp := *in
		cp.Command = slices.Clone(in.Command)
		cp.Parameters = in.Parameters.Clone()
		c.Instances[id] = &cp
	}
	if r.Groups != nil {
		c.Groups = make(map[string]Group, len(r.Groups))
		for name, g := range r.Groups {
			c.Groups[name] = g
		}
	}
	if r.RemoteMembers != nil {
		c.RemoteMembers = make(map[string]RemoteMember, len(r.RemoteMembers))
		for id, m := range r.RemoteMembers {
			c.RemoteMembers[id] = m
		}
	}
	return c
}

// OpenRegistry returns the registry stored at path; nothing is read until
// Load or Update.
func OpenRegistry(path string) *RegistryFile {
	return &RegistryFile{Path: path}
}

// lockPath is the file the lock is taken on. The data file is replaced by
// rename on every write, so a lock held on it would guard a stale inode.
func (f *RegistryFile) lockPath() string { return f.Path + ".lock" }

// tempPrefix starts the name of a registry being written, next to the data
// file so that the rename stays within one filesystem.
func (f *RegistryFile) tempPrefix() string { return "." + filepath.Base(f.Path) + ".tmp-" }

// Load reads the registry. A missing file is an empty registry. It takes no
// lock: writes replace the file atomically, so a reader sees either the old
// or the new registry, and no writer can keep it waiting.
//
// While the file is the one it last read (same inode, size, change and
// modification times), Load returns a copy of that registry instead of
// parsing the file again; the caller may change what it gets.
func (f *RegistryFile) Load() (*Registry, error) {
	fi, err := os.Stat(f.Path)
	if err != nil {
		r, _, err := f.read()
		return r, err
	}
	key, ok := keyOf(fi)
	if p := f.parsed.Load(); ok && p != nil && p.key == key {
		return p.reg.clone(), nil
	}
	r, _, err := f.read()
	if err != nil {
		return nil, err
	}
	// Kept only when the file is still the one stat saw: one replaced in
	// between may have been read in its new version.
	if fi2, err := os.Stat(f.Path); ok && err == nil {
		if key2, ok2 := keyOf(fi2); ok2 && key2 == key {
			f.parsed.Store(&parsedRegistry{key: key, reg: r.clone()})
		}
	}
	return r, nil
}

// Update changes the registry under an exclusive lock: it reads the registry,
// calls fn and, unless fn returns an error, validates the result and writes it
// back atomically. An instance added with an empty ID takes its key as ID.
// The error of fn is returned as it is and nothing is written. A registry file
// that fails to load is never overwritten.
func (f *RegistryFile) Update(fn func(*Registry) error) error {
	dir := filepath.Dir(f.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create registry directory: %w", err)
	}
	lock, err := f.lock(context.Background(), f.lockPath())
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := f.removeStaleTemps(); err != nil {
		return err
	}
	r, old, err := f.read()
	if err != nil {
		return err
	}
	if err := fn(r); err != nil {
		return err
	}
	for id, in := range r.Instances {
		if in != nil && in.ID == "" {
			in.ID = id
		}
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("update registry %s: %w", f.Path, err)
	}
	data, err := encodeRegistry(r)
	if err != nil {
		return fmt.Errorf("update registry %s: %w", f.Path, err)
	}
	if old != nil && bytes.Equal(data, old) {
		return nil
	}
	return f.write(data)
}

// read parses and validates the data file, returning the registry and the
// bytes it came from (nil when the file does not exist).
func (f *RegistryFile) read() (*Registry, []byte, error) {
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Registry{Instances: map[string]*Instance{}}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load registry: %w", err)
	}
	r, err := decodeRegistry(data)
	if err != nil {
		return nil, nil, fmt.Errorf("load registry %s: %w", f.Path, malformed(err))
	}
	return r, data, nil
}

// registryHeader opens every registry file written.
const registryHeader = "# Instance registry of kato-manager: one [instances.ID] table per instance.\n" +
	"# Written by kato-manager; a hand edit must keep every entry valid.\n"

// registryDoc is the file shape, with each entry kept raw until it can be
// decoded over default parameters: an entry written before a parameter
// existed gets that parameter's default.
type registryDoc struct {
	Instances     map[string]toml.Primitive `toml:"instances"`
	Groups        map[string]Group          `toml:"groups"`
	RemoteMembers map[string]RemoteMember   `toml:"remote_members"`
}

// decodeRegistry reads a registry file: a file in the shape the writer
// gives it by decodeRegistryFast, anything else, and every refusal, by
// decodeRegistryFull.
func decodeRegistry(data []byte) (*Registry, error) {
	if r, ok := decodeRegistryFast(data); ok {
		return r, nil
	}
	return decodeRegistryFull(data)
}

// decodeRegistryFull reads any registry file the TOML decoder takes, and
// words the error of one it refuses.
func decodeRegistryFull(data []byte) (*Registry, error) {
	var doc registryDoc
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return nil, tomlError(err)
	}
	r := &Registry{Instances: make(map[string]*Instance, len(doc.Instances)), Groups: doc.Groups, RemoteMembers: doc.RemoteMembers}
	for id, raw := range doc.Instances {
		in := &Instance{ID: id, Network: NetworkHost}
		if err := md.PrimitiveDecode(raw, in); err != nil {
			return nil, tomlError(err)
		}
		// Parameters are merged over the defaults: an entry written before
		// a parameter existed gets its default, an old name its new one.
		params, err := DefaultParameters().Merge(in.Parameters)
		if err != nil {
			key := toml.Key{"instances", id, "parameters"}
			return nil, fmt.Errorf("%s%w", linePrefix(data, fieldPath(key, err)), prefixField(key.String()+".", err))
		}
		in.Parameters = params
		r.Instances[id] = in
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return nil, fmt.Errorf("%sunknown key %s", linePrefix(data, undecoded[0]), undecoded[0])
	}
	if key, err := r.validate(); err != nil {
		return nil, fmt.Errorf("%s%w", linePrefix(data, key), err)
	}
	return r, nil
}

func encodeRegistry(r *Registry) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(registryHeader)
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	// A blank line before each table header; values never hold a raw newline
	// (the encoder escapes it), so every "\n[" starts a header.
	return bytes.ReplaceAll(buf.Bytes(), []byte("\n["), []byte("\n\n[")), nil
}

// write replaces the data file with data, atomically and durably (see
// atomicfile.Write).
func (f *RegistryFile) write(data []byte) error {
	opts := atomicfile.Options{TempPrefix: f.tempPrefix(), BeforeRename: afterTempWrite}
	if err := atomicfile.Write(f.Path, data, 0o644, opts); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// afterTempWrite, when set, runs between writing the temporary file and
// renaming it, the window in which a crash must leave the old registry.
var afterTempWrite func(tmpPath string)

// removeStaleTemps deletes temporary files left by a writer that died before
// its rename. Only the holder of the exclusive lock creates them, so any found
// while holding it are stale.
func (f *RegistryFile) removeStaleTemps() error {
	stale, err := filepath.Glob(filepath.Join(filepath.Dir(f.Path), globEscape(f.tempPrefix())+"*"))
	if err != nil {
		return fmt.Errorf("find stale registry files: %w", err)
	}
	for _, name := range stale {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale registry file: %w", err)
		}
	}
	return nil
}

// globEscape quotes the pattern characters of filepath.Match in s.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// malformedError marks err as ErrMalformed without changing its message.
type malformedError struct{ err error }

func (e malformedError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e malformedError) Unwrap() []error { return []error{ErrMalformed, e.err} }

func malformed(err error) error { return malformedError{err} }
