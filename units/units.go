// Package units owns the systemd side of kato-manager's files: the unit files,
// sysusers.d and tmpfiles.d entries it installs, the names of the units it
// manages, and the per-instance drop-in and environment file it renders for
// each KATO processor.
//
// The installed files are real files in this directory, embedded as they are
// installed. Everything rendered from user input goes through an escaping
// function for the syntax it lands in, so no value can add a directive or a
// variable of its own.
package units

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Directories a Template is installed into, relative to the system's
// configuration root for that kind of file (for example /usr/lib/systemd/system
// for SystemdDir, /usr/lib/sysusers.d for SysusersDir).
const (
	// SystemdDir holds unit files.
	SystemdDir = "systemd"
	// SysusersDir holds sysusers.d entries.
	SysusersDir = "sysusers"
	// TmpfilesDir holds tmpfiles.d entries.
	TmpfilesDir = "tmpfiles"
)

// Template is one file kato-manager installs: the name systemd (or
// systemd-sysusers, systemd-tmpfiles) knows it by, the kind of directory it
// goes into (SystemdDir, SysusersDir or TmpfilesDir) and its content.
type Template struct {
	Name    string
	Dir     string
	Content []byte
}

var (
	//go:embed kato@.service
	instanceService []byte
	//go:embed kato.target
	instanceTarget []byte
	//go:embed kato-group@.target
	groupTarget []byte
	//go:embed kato-proxy@.socket
	proxySocket []byte
	//go:embed kato-proxy@.service
	proxyService []byte
	//go:embed kato-front@.service
	frontService []byte
	//go:embed kato-link@.socket
	linkSocket []byte
	//go:embed kato-link@.service
	linkService []byte
	//go:embed kg-worker@.service
	workerService []byte
	//go:embed kg-workers.target
	workerTarget []byte
	//go:embed kato-manager.service
	managerService []byte
	//go:embed kato-liveness.service
	livenessService []byte
	//go:embed kato-liveness.timer
	livenessTimer []byte
	//go:embed kato-queue.socket
	queueSocket []byte
	//go:embed kato-queue@.service
	queueService []byte
	//go:embed kato.sysusers
	sysusers []byte
	//go:embed kato.tmpfiles
	tmpfiles []byte
)

// Templates returns every file kato-manager installs, in the order an
// installer should write them: the unit files, then the sysusers.d and
// tmpfiles.d entries. Each call returns fresh copies the caller may modify.
func Templates() []Template {
	return []Template{
		{Name: InstanceTemplate, Dir: SystemdDir, Content: clone(instanceService)},
		{Name: InstanceTarget, Dir: SystemdDir, Content: clone(instanceTarget)},
		{Name: GroupTemplate, Dir: SystemdDir, Content: clone(groupTarget)},
		{Name: "kato-proxy@.socket", Dir: SystemdDir, Content: clone(proxySocket)},
		{Name: "kato-proxy@.service", Dir: SystemdDir, Content: clone(proxyService)},
		{Name: "kato-link@.socket", Dir: SystemdDir, Content: clone(linkSocket)},
		{Name: "kato-link@.service", Dir: SystemdDir, Content: clone(linkService)},
		{Name: FrontTemplate, Dir: SystemdDir, Content: clone(frontService)},
		{Name: WorkerTemplate, Dir: SystemdDir, Content: clone(workerService)},
		{Name: WorkerTarget, Dir: SystemdDir, Content: clone(workerTarget)},
		{Name: ManagerService, Dir: SystemdDir, Content: clone(managerService)},
		{Name: LivenessService, Dir: SystemdDir, Content: clone(livenessService)},
		{Name: LivenessTimer, Dir: SystemdDir, Content: clone(livenessTimer)},
		{Name: QueueSocket, Dir: SystemdDir, Content: clone(queueSocket)},
		{Name: QueueTemplate, Dir: SystemdDir, Content: clone(queueService)},
		{Name: "kato.conf", Dir: SysusersDir, Content: clone(sysusers)},
		{Name: "kato.conf", Dir: TmpfilesDir, Content: clone(tmpfiles)},
	}
}

// PackagedManager is where the packages install kato-manager, the binary
// kato-manager.service runs as shipped.
const PackagedManager = "/usr/bin/kato-manager"

// managerCommands are the command lines, after the binary, of the units
// that run kato-manager itself, as shipped.
var managerCommands = map[string]string{
	ManagerService:  "serve",
	LivenessService: "liveness",
	QueueTemplate:   "__queue-db",
}

// SystemTemplates returns Templates with the units that run kato-manager
// itself (kato-manager.service, kato-liveness.service, kato-queue@.service) running the binary at
// exe: what install-units writes, so that they run the binary that
// installed them (/usr/local/bin/kato-manager in a source install). exe
// must be an absolute path; "" or PackagedManager leaves the files as
// shipped.
func SystemTemplates(exe string) ([]Template, error) {
	out := Templates()
	if exe == "" || exe == PackagedManager {
		return out, nil
	}
	for i, t := range out {
		args, ok := managerCommands[t.Name]
		if !ok {
			continue
		}
		line, err := execLine([]string{exe, args})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		shipped := "ExecStart=" + PackagedManager + " " + args + "\n"
		content := string(t.Content)
		if strings.Count(content, shipped) != 1 {
			return nil, fmt.Errorf("%s has no %q line to render", t.Name, strings.TrimSpace(shipped))
		}
		out[i].Content = []byte(strings.Replace(content, shipped, "ExecStart="+line+"\n", 1))
	}
	return out, nil
}

func clone(b []byte) []byte {
	return append([]byte(nil), b...)
}

// FrontTemplate is the template unit of a group's front, HAProxy on the
// configuration the front package renders.
const FrontTemplate = "kato-front@.service"

// FrontUnit returns the unit of the front of group.
func FrontUnit(group string) string { return "kato-front@" + group + serviceSuffix }

// FrontPattern matches the unit names of all groups' fronts.
const FrontPattern = "kato-front@*.service"

// FrontGroup returns the group of a front's unit name, the inverse of
// FrontUnit.
func FrontGroup(unit string) (string, bool) {
	name, ok := strings.CutPrefix(unit, "kato-front@")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, serviceSuffix)
	if !ok || name == "" || strings.ContainsAny(name, "@/\\") {
		return "", false
	}
	return name, true
}

// InstanceTemplate is the template unit every instance is an instance of.
const InstanceTemplate = "kato@.service"

// InstanceTarget is the target that groups the KATO processor instances.
const InstanceTarget = "kato.target"

// GroupTemplate is the template target each group of instances is an
// instance of.
const GroupTemplate = "kato-group@.target"

// GroupPattern matches the unit names of all group targets.
const GroupPattern = "kato-group@*.target"

// MaxGroupName is the longest group name.
const MaxGroupName = 32

// GroupTarget returns the target of the group name, for example
// kato-group@nlp.target. Callers pass names GroupNameRule accepts.
func GroupTarget(name string) string { return "kato-group@" + name + ".target" }

// IsGroupTarget reports whether unit matches GroupPattern, as systemd's
// ListUnitsByPatterns matches it; GroupName also checks the name.
func IsGroupTarget(unit string) bool {
	ok, _ := path.Match(GroupPattern, unit)
	return ok
}

// GroupName returns the group of a group target's name, the inverse of
// GroupTarget.
func GroupName(unit string) (string, bool) {
	name, ok := strings.CutPrefix(unit, "kato-group@")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, ".target")
	if !ok || GroupNameRule(name) != "" {
		return "", false
	}
	return name, true
}

// GroupNameRule returns the rule name breaks as a group name, or "": 1 to
// MaxGroupName letters, digits, '-' and '_', as it becomes part of a unit
// name unescaped.
func GroupNameRule(name string) string {
	if name == "" || len(name) > MaxGroupName {
		return fmt.Sprintf("must be 1 to %d characters long", MaxGroupName)
	}
	for _, r := range name {
		if !isIDRune(r) {
			return "must contain only letters, digits, '-' and '_'"
		}
	}
	return ""
}

// GroupDropInDir returns the drop-in directory of the group's target, where
// RenderGroupDropIn's output goes as DropInName.
func GroupDropInDir(name string) string { return GroupTarget(name) + ".d" }

// RenderGroupDropIn renders the drop-in of a group's target: it wants every
// member, so that starting the target starts them. ids are instance ids
// ValidateInstanceID accepts.
func RenderGroupDropIn(name string, ids []string) ([]byte, error) {
	if rule := GroupNameRule(name); rule != "" {
		return nil, fmt.Errorf("invalid group %q: %s", name, rule)
	}
	wants := section("Unit")
	for _, id := range ids {
		if err := ValidateInstanceID(id); err != nil {
			return nil, err
		}
		wants.Entries = append(wants.Entries, entry("Wants", InstanceUnit(id)))
	}
	return render([]string{
		"Generated by kato-manager for the group " + name + " of KATO processor instances.",
		"kato-manager overwrites this file whenever the group's members change.",
	}, wants), nil
}

// WorkerTemplate is the template unit every KG worker is an instance of.
const WorkerTemplate = "kg-worker@.service"

// WorkerTarget is the target that groups the KG worker pool.
const WorkerTarget = "kg-workers.target"

// ManagerService runs `kato-manager serve`; it is installed disabled.
const ManagerService = "kato-manager.service"

// LivenessService runs one `kato-manager liveness` check; LivenessTimer,
// installed enabled, starts it every 5 seconds.
const (
	LivenessService = "kato-liveness.service"
	LivenessTimer   = "kato-liveness.timer"
)

// QueueSocket is where root's commands reach the queue database in the
// system scope: systemd starts an instance of QueueTemplate, as the
// service user, for each connection. It is installed enabled.
const QueueSocket = "kato-queue.socket"

// QueueTemplate is the template of the helpers QueueSocket starts.
const QueueTemplate = "kato-queue@.service"

// QueueSocketPath is the path QueueSocket listens on (its ListenStream=).
const QueueSocketPath = "/run/kato-manager/queue.sock"

// InstancePattern matches the unit names of all KATO processor instances, in
// the glob syntax systemd's ListUnitsByPatterns accepts.
const InstancePattern = "kato@*.service"

// WorkerPattern matches the unit names of all KG workers, in the glob syntax
// systemd's ListUnitsByPatterns accepts.
const WorkerPattern = "kg-worker@*.service"

const (
	instancePrefix = "kato@"
	workerPrefix   = "kg-worker@"
	serviceSuffix  = ".service"
	// maxUnitName is the longest unit name systemd accepts.
	maxUnitName = 255
)

// MaxInstanceID is the longest instance id: well within a unit name (at
// most 255 characters with "kato@" and ".service"), and short enough for the
// names of a private network's units and for tables.
const MaxInstanceID = 64

// EnvironmentDir is the directory holding each instance's environment file,
// as named by EnvironmentFile= in kato@.service.
const EnvironmentDir = "/etc/kato/instances"

// InstanceStateRoot is the directory under which each instance's state
// directory lives, as named by StateDirectory= in kato@.service.
const InstanceStateRoot = "/var/lib/kato/instances"

// InstanceUnit returns the unit name of the KATO processor instance id, for
// example kato@processor-1.service.
//
// The id is used verbatim, without systemd-escape: ValidateInstanceID limits
// ids to ASCII letters, digits, '-' and '_', all of which are valid in a unit
// name, and the unit files refer to the instance with %i (the instance string
// as written) rather than %I (which would turn '-' into '/'). So the id reads
// the same in the unit name, the environment file name, the state directory
// and the syslog identifier. go-systemd's unit.UnitNameEscape is not used for
// the same reason: it writes '-' as \x2d, kato@processor\x2d1.service.
// Callers pass ids that ValidateInstanceID accepts.
func InstanceUnit(id string) string {
	return instancePrefix + id + serviceSuffix
}

// InstanceID returns the instance id of an instance unit name, the inverse of
// InstanceUnit. It reports false for any other unit, including an instance
// whose id ValidateInstanceID rejects, so that InstanceUnit(id) == unit
// whenever it reports true.
func InstanceID(unit string) (string, bool) {
	id, ok := strings.CutPrefix(unit, instancePrefix)
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(id, serviceSuffix)
	if !ok || ValidateInstanceID(id) != nil {
		return "", false
	}
	return id, true
}

// InstanceDropInDir returns the name of the drop-in directory of the instance
// id, the directory DropInName is written into.
func InstanceDropInDir(id string) string {
	return InstanceUnit(id) + ".d"
}

// InstanceEnvironmentFile returns the path of the environment file
// kato@.service reads for the instance id, the file RenderEnvironment's output
// is written to.
func InstanceEnvironmentFile(id string) string {
	return EnvironmentDir + "/" + id + ".env"
}

// maxUserName is the longest user name systemd allocates for DynamicUser=.
const maxUserName = 31

// instanceUserPrefix starts the name of every instance's user; the user of
// an id too long for it starts with hashedUserPrefix instead, which no
// instance's short name can.
const (
	instanceUserPrefix = "kato-"
	hashedUserPrefix   = "katoh-"
)

// InstanceUser returns the user the instance id runs as, which systemd
// allocates while it runs (DynamicUser=): kato-ID, as kato@.service names
// it, or for an id that makes that longer than systemd takes, katoh- and 24
// hexadecimal digits of the id's SHA-256, which the instance's drop-in names.
func InstanceUser(id string) string {
	if u := instanceUserPrefix + id; len(u) <= maxUserName {
		return u
	}
	sum := sha256.Sum256([]byte(id))
	return hashedUserPrefix + hex.EncodeToString(sum[:])[:24]
}

// InstanceStateDir returns the path of the instance's persistent state
// directory, which systemd creates when the instance first starts.
func InstanceStateDir(id string) string {
	return InstanceStateRoot + "/" + id
}

// ValidateInstanceID reports whether id can name a KATO processor instance:
// one to MaxInstanceID ASCII letters, digits, '-' or '_'. These are the ids
// that fit a unit name, a file name and a syslog identifier unchanged. The
// error names the rule InstanceIDRule gives.
func ValidateInstanceID(id string) error {
	if rule := InstanceIDRule(id); rule != "" {
		return fmt.Errorf("invalid instance id %q: %s", id, rule)
	}
	return nil
}

// InstanceIDRule returns the rule id breaks as an instance id, or "": the
// one definition of what an instance id may be, which config's checks of
// flags and files use too.
func InstanceIDRule(id string) string {
	if id == "" || len(id) > MaxInstanceID {
		return fmt.Sprintf("must be 1 to %d characters long", MaxInstanceID)
	}
	for _, r := range id {
		if !isIDRune(r) {
			return "must contain only letters, digits, '-' and '_'"
		}
	}
	return ""
}

func isIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// WorkerUnit returns the unit name of KG worker n, for example
// kg-worker@1.service. n is not negative.
func WorkerUnit(n int) string {
	return workerPrefix + strconv.Itoa(n) + serviceSuffix
}

// WorkerNumber returns the worker number of a KG worker unit name, the inverse
// of WorkerUnit. It reports false for any other unit, including one whose
// instance is not a non-negative decimal number written without sign or
// leading zeros, so that WorkerUnit(n) == unit whenever it reports true.
func WorkerNumber(unit string) (int, bool) {
	s, ok := strings.CutPrefix(unit, workerPrefix)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, serviceSuffix)
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, false
	}
	return n, true
}
