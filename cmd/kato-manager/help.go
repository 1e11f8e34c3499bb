package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// longHelp is the description of each command, by its path below the root,
// for its --help and its man page.
var longHelp = map[string]string{
	"start": `Register, configure and start a KATO processor instance as kato@ID.service.

start validates the input, registers the instance and picks its ports under the
registry lock, writes the instance's environment file (/etc/kato/instances/ID.env)
and drop-in, enables and starts the unit, and waits until the processor is
ready: its health request (the processor's ready in kato.toml, such as
GET /health) answers HTTP 200 on its API port. If the processor exits or is
not ready within --timeout, everything is rolled back and the unit's last
journal lines are printed.

Starting an instance that is already running does nothing and says so; starting
one that exists but is stopped starts it with its stored settings. --template NAME
starts from [templates.NAME] of kato.toml, the flags given overriding it; --group
NAME makes the instance part of the group's target, kato-group@NAME.target.
--group NAME alone starts the group's registered instances that are not running,
side by side. Without --id,
an ID is made from the time and the process ID. A requested or default port that
is listening, or reserved by a registered instance, moves to the next free one,
with a notice. Flags left out take the [defaults] of kato.toml.`,
	"stop": `Stop and remove one instance, by ID or name, or every instance. A unique
beginning or part of a name selects its instance, as for restart and logs;
one that fits several lists them and stops nothing.

Stopping an instance removes its drop-in and environment file, disables the unit,
clears any failed state and removes its registry entry; its learned state in
/var/lib/kato/instances/ID stays. Without an instance, every instance, registered
or orphaned, is stopped; on a terminal, without --with-mongo or --no-mongo, it
asks whether to stop the shared services (services.units) too. --group NAME stops
and removes every instance of the group.`,
	"restart": `Restart an instance with the same ID, ports and settings. Its files are written
again first, so changes to kato.toml take effect; then it waits for the API port.
With --group NAME, every instance of the group restarts, side by side; a group
with a front restarts rolling (--max-unavailable, default 1), and --surge N first
starts N extra members from the group's template, removed after the roll, so that
with --max-unavailable 0 no fewer members than the group's serve; without
--surge, the group's own surge ([groups.NAME] surge) applies. A member of this
host's front that runs on another host is drained here and restarted there over ssh.`,
	"list": `List the instances with their group, state, main PID, API and ZMQ ports, uptime
and memory, from one D-Bus call and one pass over /proc; --group NAME lists one
group's. Then the groups' fronts (kato-front@GROUP): address, port, balance, their
members up, draining and down with each member's sessions, and the requests and
errors, from each front's stats socket; --fronts lists the fronts alone (with
--json, as a JSON array). In list --json each member instance has "front": its
group and state there.`,
	"status": `Check that systemd is reachable, the shared services' states, and each instance's
unit state, restart count and whether its API port is held by its own processor.
It reports drift between the registry and systemd, and each group's front with a
PROBLEM when it is not running, its stats socket does not answer, a member is down
or no member is up. Exit status 1 when anything is wrong.`,
	"logs": `Show an instance's journal, as journalctl -u kato@ID.service does: the last
--lines lines, then, with --follow, new lines as they come until interrupted.
--since leaves out older lines and, without --lines, shows all lines since then.
It reads journalctl --output=json. Control characters, bidirectional overrides
and bytes that are not UTF-8 in what the processor logged are shown escaped
(\x1b, \u202e).`,
	"apply": `Make the registered instances what a fleet file says: YAML as in the KATO
multi-instance guide's multi-instance.yaml, JSON of the same shape, or TOML with
one [[instances]] table per entry. Each entry has an id and any of name, port,
zmq_port, processor, network, group, template and the processor settings by
their names (max_predictions, recall_threshold, ...).

The whole file is checked first; every problem is printed at once with its file,
line, entry, field, value and rule, and nothing changes (exit 2). Then apply
creates the instances that are missing, re-renders and restarts those whose
settings differ and leaves the others alone: a second apply of the same file
restarts nothing and says so. --prune also stops and removes the registered
instances the file does not name. New and changed instances start side by side,
at most --parallel at once; one that does not become ready is rolled back (a new
one removed, a changed one put back) and the others stand: exit 1. Changed members
of a group whose front runs restart rolling through it, one at a time; with
--surge N (default: the group's surge), N extra members of the group start first
from its template, N members go out at a time while they serve, and they are
removed after.`,
	"scale": `Make a group exactly N replicas NAME-1 to NAME-N (0 to 256) from its
[groups.NAME] template or processor: the missing ones start one after the other,
each added to the group's front once ready; those past N are drained out of the
front, then stopped and removed. Other members of the group are left alone.
--prefix ID names the replicas ID-1 to ID-N instead.

--on-host HOST, on the host that runs the group's front, scales the group's
replicas on that other host: its members there must be one series ID-1 to ID-K
(a fleet entry with host: and replicas:). Those going away are drained out of the
front here first; then HOST's kato-manager scales them over ssh, and the front
takes what it runs. An unknown host, a host without a member of the group and
N below 0 are refused (exit 2), nothing changed. Without --on-host, scale
changes this host's replicas only, and says so when the group has members on
other hosts. The global --host runs the whole command on another host instead,
whose front, if any, is its own.`,
	"diff": `Print what apply -f FILE would do, per instance and field, changing nothing:
"+ ID" and its settings for an instance to create, "~ ID" and "field: old -> new"
for one to change (restart), "- ID" for one to remove with --prune.

Exit status, as diff(1) and kubectl diff: 0 nothing to do, 1 apply would change
something, 2 the file, the command line or the registry is wrong.`,
	"export": `Write every registered instance as a fleet file (--format yaml, json or toml) to
standard output: id, name, ports, processor, network, group and the settings that
differ from [defaults]. apply of it changes nothing.`,
	"gc": `Repair drift: remove registry entries whose unit files are gone, and tear down
instance units and files that have no registry entry.`,
	"liveness": `One run of the liveness check; kato-liveness.timer runs it every 5 seconds.
For every running instance whose processor has liveness_failures above 0
(generation C's default is 3; A and B have it off) and whose liveness_interval
has passed since its last check: the processor's health request, within
liveness_timeout. A request that times out, answers other than 200, or whose
body says "unhealthy" is a failure; liveness_failures of them in a row restart
the instance (systemctl restart), which is logged to the journal with the
reason, under kato-liveness.service and the instance's unit, and counted:
status shows it, /metrics has kato_instance_liveness_restarts_total. A stopped
instance, or one started less than ready_timeout ago, is never checked; a
success or a restart sets the count back to 0. The counts are kept in
/var/lib/kato/liveness.json (root's, 0600).`,
	"install-units": `Write the unit templates (kato@.service, kato.target, kg-worker@.service,
kg-workers.target, kato-manager.service, kato-liveness.service and
kato-queue@.service, which run this
kato-manager binary, kato-queue.socket), the sysusers.d and tmpfiles.d
entries, create the kato user and directories, reload systemd, and enable and
start kato-queue.socket, through which root's queue commands and serve do
their database work as kato, and kato-liveness.timer, the liveness check. start and the worker commands do it by
themselves the first time. When a new kato@.service or kg-worker@.service is written, the instances
and workers that run are restarted on it.

The KG workers run as the kato user, which owns the queue and reads kato.toml.
Each processor instance runs as a user of its own, kato-ID, which systemd
allocates while it runs (DynamicUser=); its state directory is kept in
/var/lib/private/kato/instances/ID, linked from /var/lib/kato/instances/ID.
Under --user everything runs as the invoking user.`,
	"workers": `Manage the KG worker pool: kg-worker@1.service ... kg-worker@N.service, which
take items from the queue (the SQLite file kg.db_path, or the PostgreSQL database
kg.db_url that workers on many hosts share) in batches, send them to the KG
service (kg.service_url) and write the results back.`,
	"workers start": `Enable and start kg-worker@1 ... kg-worker@N; N defaults to kg.num_workers.
--poll-interval is written to /etc/kato/kg-worker.env, and the workers restart to
read it.`,
	"workers stop": `Stop and disable every worker. Each worker stops claiming items and finishes or
hands back what it holds, so nothing is left in processing.`,
	"workers scale": `Make exactly workers 1..N run, starting or stopping only the difference.`,
	"workers health": `Report status, manager_running, total_workers, healthy_workers,
unhealthy_workers, workers_restarted (systemd's restart counts), worker_details
(with each worker's stats) and kg_service_status, what the KG service's /health
answers now. A worker is healthy when its unit runs and its process is neither
stopped nor a zombie. Exit status 1 when a worker is unhealthy, unless
--restart-unhealthy restarted it; 3 (degraded) when the workers are healthy but
the KG service is not.`,
	"workers stats": `The pool's aggregate statistics: the sums of the workers' reports (success,
failed and skipped), the KG service's status as the first worker sees it, and the
queue's counts. A worker's report follows its items within a quarter second.
worker_id counts from 0, as the KG Manager's; instance is the N of kg-worker@N.`,
	"queue": `Add to and inspect the KG queue: the SQLite database at kg.db_path, or the PostgreSQL database kg.db_url when set.`,
	"queue migrate": `Copy the SQLite queue at kg.db_path (documents, chunks, results, queue items,
worker reports) into the empty PostgreSQL database --to (default kg.db_url), in
one transaction; the row counts of both sides are compared before the commit,
and the file is only read. The password comes from PGPASSWORD, the password file
(PGPASSFILE, ~/.pgpass) or the service (PGSERVICE), as with psql: keep it off the
command line. Stop the pool first (workers stop); then set kg.db_url to the same
URL, if it is not already, and start it again.`,
	"queue enqueue": `Queue crawled_content rows, by id, for KG processing. Higher priority goes first.
An id without a crawled_content row is refused, and then none is queued.`,
	"queue retry-failed": `Put failed items, all of them or the ones named, back to pending with a fresh
retry count.`,
	"serve": `Serve the dashboard at /, GET /metrics for Prometheus, and GET /health (503
when a worker is unhealthy) and GET /stats as JSON, the same as workers health
--json and workers stats --json, for monitoring tools.

Every read and action needs the bearer token of --token-file (at least 32
characters: openssl rand -hex 32), sent as "Authorization: Bearer TOKEN" or
given once at the dashboard's login; --public-reads serves reads without it.
Requests must name the server in their Host header (the --listen host,
localhost on loopback, or an --allow-host name). An address other than
loopback needs the token and TLS: --tls-cert and --tls-key, or the systemd
credentials tls-cert and tls-key. Wrong tokens are rate-limited (429).`,
}

// examples are each command's examples, by its path below the root.
var examples = map[string]string{
	"start": `  kato-manager start --id processor-1 --name "Main Processor" --port 8001
  kato-manager start --id processor-2 --name Secondary --port 8002 --max-predictions 200
  kato-manager start --id processor-3 --name "Auto Learner" --port 8003 --max-seq-length 10`,
	"stop": `  kato-manager stop processor-1
  kato-manager stop --name Secondary
  kato-manager stop --all --no-mongo`,
	"logs": `  kato-manager logs processor-1 -n 20
  kato-manager logs processor-1 --since 10m -f`,
	"workers scale": `  kato-manager workers scale 4`,
	"queue enqueue": `  kato-manager queue enqueue 101 102 103 --priority 5`,
}

// describe gives every command of the tree its long help and examples, and
// its help the flag list of flagUsages.
func describe(root *cobra.Command) {
	cobra.AddTemplateFunc("flagUsages", flagUsages)
	tmpl := root.UsageTemplate()
	tmpl = strings.ReplaceAll(tmpl, ".LocalFlags.FlagUsages", "flagUsages .LocalFlags")
	tmpl = strings.ReplaceAll(tmpl, ".InheritedFlags.FlagUsages", "flagUsages .InheritedFlags")
	root.SetUsageTemplate(tmpl)
	forEach(root, func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if long, ok := longHelp[path]; ok {
			c.Long = long
		}
		if ex, ok := examples[path]; ok {
			c.Example = ex
		}
	})
}

// forEach calls do with c and every command below it.
func forEach(c *cobra.Command, do func(*cobra.Command)) {
	do(c)
	for _, sub := range c.Commands() {
		forEach(sub, do)
	}
}

// flagUsages is the flag list of a help: pflag's, but a flag that takes no
// value is shown as --flag, not --flag[=true|false].
func flagUsages(fs *pflag.FlagSet) string {
	plain := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
	plain.SortFlags = fs.SortFlags
	fs.VisitAll(func(f *pflag.Flag) {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			c := *f
			c.Value = plainValue{f.Value}
			f = &c
		}
		plain.AddFlag(f)
	})
	return plain.FlagUsages()
}

// plainValue hides a Value's IsBoolFlag from pflag's usage, which prints
// [=true|false] after a flag that has it; its NoOptDefVal still says that
// the flag takes no value.
type plainValue struct{ pflag.Value }
