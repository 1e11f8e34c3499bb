package textview

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kato-manager/kato-manager/supervisor"
)

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// listHeader is the header of list's table, listRow one of its rows.
const listHeader = "ID\tNAME\tPROCESSOR\tNETWORK\tGROUP\tSTATE\tPID\tAPI\tZMQ\tUPTIME\tMEMORY"

func listRow(v supervisor.InstanceView) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s", v.ID, v.Name, processorLabel(v), v.Network, OrDash(v.Group), v.State(), dash(v.PID), v.APIPort, dash(int32(v.ZMQPort)), uptime(v.UptimeSeconds, v.PID), memory(v.MemoryBytes))
}

// List writes list's table of instances.
func List(w io.Writer, views []supervisor.InstanceView) error {
	// tabwriter writes cell by cell: one write to w for the table.
	out := bufio.NewWriter(w)
	tw := table(out)
	fmt.Fprintln(tw, listHeader)
	for _, v := range views {
		fmt.Fprintln(tw, listRow(v))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return out.Flush()
}

// HostList writes the table of a list merged over hosts: list's, with a
// HOST column first.
func HostList(w io.Writer, rows []supervisor.HostInstance) error {
	tw := table(w)
	fmt.Fprintln(tw, "HOST\t"+listHeader)
	for _, r := range rows {
		fmt.Fprintln(tw, r.Host+"\t"+listRow(r.InstanceView))
	}
	return tw.Flush()
}

// frontHeader is the header of the fronts' table, in list and status; with
// problems, status's PROBLEM column too. Each front's members follow it on
// lines of their own.
const frontHeader = "GROUP\tSTATE\tADDRESS\tPORT\tBALANCE\tMEMBERS\tREQUESTS\tERRORS"

// Fronts writes the fronts' table, each front followed by its members
// with their states and sessions; with problems, each front's problem.
func Fronts(w io.Writer, pal Palette, fronts []supervisor.FrontView, problems bool) error {
	tw := table(w)
	header := frontHeader
	if problems {
		header += "\t" + pal.Paint(Plain, "PROBLEM")
	}
	fmt.Fprintln(tw, "  "+header)
	for _, f := range fronts {
		state := f.State()
		members := f.Counts.String()
		if !f.Answering && f.ActiveState == "active" {
			members = "not answering"
		}
		port := "-"
		if f.Port != 0 {
			port = fmt.Sprint(f.Port)
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d", f.Group, pal.Paint(StateColour(state), state), OrDash(f.Address), port, OrDash(f.Balance), members, f.Requests, f.Errors)
		if problems {
			problem, colour := f.Problem, Red
			if problem == "" {
				problem, colour = "-", Plain
			}
			row += "\t" + pal.Paint(colour, problem)
		}
		fmt.Fprintln(tw, "  "+row)
		for _, mb := range f.Members {
			id := mb.ID
			if mb.Host != "" {
				id += " on " + mb.Host
			}
			fmt.Fprintf(tw, "    member %s\t%s\tsessions %d\tweight %d\t\t\t%d\t%d\n", id, mb.State, mb.Sessions, mb.Weight, mb.Requests, mb.Errors)
		}
	}
	return tw.Flush()
}

// Status writes status's report: systemd, the shared services, the
// instances, the fronts, the warnings and the registry's drift.
func Status(w io.Writer, pal Palette, st *supervisor.Status) {
	if !st.SystemdReachable {
		fmt.Fprintf(w, "systemd: unreachable: %s\n", st.SystemdError)
		return
	}
	fmt.Fprintf(w, "systemd: reachable (version %s)\n", st.SystemdVersion)
	if len(st.Services) > 0 {
		fmt.Fprintln(w, "shared services:")
		for _, s := range st.Services {
			fmt.Fprintf(w, "  %s: %s (%s/%s)\n", s.Unit, s.LoadState, s.ActiveState, s.SubState)
		}
	}
	if len(st.Instances) == 0 {
		fmt.Fprintln(w, "instances: none")
	} else {
		fmt.Fprintln(w, "instances:")
		out := bufio.NewWriter(w)
		tw := table(out)
		fmt.Fprintln(tw, "  "+statusHeader(pal))
		for _, i := range st.Instances {
			fmt.Fprintln(tw, "  "+statusRow(pal, i))
		}
		tw.Flush()
		out.Flush()
	}
	if len(st.Fronts) > 0 {
		fmt.Fprintln(w, "fronts:")
		Fronts(w, pal, st.Fronts, true)
	}
	for _, warning := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	for _, line := range driftLines(st.Drift, "kato-manager gc") {
		fmt.Fprintf(w, "registry: %s\n", line)
	}
}

// HostStatuses writes a status merged over hosts: per host what status
// writes once, and one instance table with a HOST column.
func HostStatuses(w io.Writer, pal Palette, all []supervisor.HostStatus) {
	fmt.Fprintln(w, "systemd:")
	for _, hs := range all {
		switch {
		case hs.Status == nil:
			fmt.Fprintf(w, "  %s: no answer: %s\n", hs.Host, hs.Error)
		case !hs.SystemdReachable:
			fmt.Fprintf(w, "  %s: unreachable: %s\n", hs.Host, hs.SystemdError)
		default:
			fmt.Fprintf(w, "  %s: reachable (version %s)\n", hs.Host, hs.SystemdVersion)
		}
	}
	var services, instances []string
	for _, hs := range all {
		if hs.Status == nil {
			continue
		}
		for _, s := range hs.Services {
			services = append(services, fmt.Sprintf("  %s: %s: %s (%s/%s)", hs.Host, s.Unit, s.LoadState, s.ActiveState, s.SubState))
		}
		for _, i := range hs.Instances {
			instances = append(instances, "  "+hs.Host+"\t"+statusRow(pal, i))
		}
	}
	if len(services) > 0 {
		fmt.Fprintln(w, "shared services:")
		fmt.Fprintln(w, strings.Join(services, "\n"))
	}
	if len(instances) == 0 {
		fmt.Fprintln(w, "instances: none")
	} else {
		fmt.Fprintln(w, "instances:")
		tw := table(w)
		fmt.Fprintln(tw, "  HOST\t"+statusHeader(pal))
		for _, row := range instances {
			fmt.Fprintln(tw, row)
		}
		tw.Flush()
	}
	for _, hs := range all {
		if hs.Status == nil {
			continue
		}
		for _, warning := range hs.Warnings {
			fmt.Fprintf(w, "warning: %s: %s\n", hs.Host, warning)
		}
	}
	fmt.Fprintln(w, "registry:")
	for _, hs := range all {
		if hs.Status == nil {
			continue
		}
		for _, line := range driftLines(hs.Drift, "kato-manager --host "+hs.Host+" gc") {
			fmt.Fprintf(w, "  %s: %s\n", hs.Host, line)
		}
	}
}

// statusHeader is the header of status's instance table, statusRow one of
// its rows. The state and the problem are painted: a state by what it
// is, a problem red.
func statusHeader(pal Palette) string {
	return "ID\tUNIT\tPROCESSOR\tNETWORK\tGROUP\t" + pal.Paint(Plain, "STATE") + "\tRESTARTS\tLIVENESS\tAPI\tLISTENING\tANSWERING\t" + pal.Paint(Plain, "PROBLEM")
}

func statusRow(pal Palette, i supervisor.InstanceStatus) string {
	problem, problemColour := i.Problem, Red
	if problem == "" {
		problem, problemColour = "-", Plain
	}
	state := i.State()
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s", i.ID, i.Unit, processorLabel(i.InstanceView), i.Network, OrDash(i.Group),
		pal.Paint(StateColour(state), state), i.Restarts, i.LivenessRestarts, i.APIPort, yesNo(i.APIListening), yesNo(i.Answering), pal.Paint(problemColour, problem))
}

// driftLines says where registry and systemd disagree, naming gc, the
// command that repairs it.
func driftLines(d supervisor.Drift, gc string) []string {
	if d.Empty() {
		return []string{"in step with systemd"}
	}
	var lines []string
	if len(d.MissingUnits) > 0 {
		lines = append(lines, fmt.Sprintf("entries whose unit vanished: %s (run `%s`)", strings.Join(d.MissingUnits, ", "), gc))
	}
	if len(d.OrphanUnits) > 0 {
		lines = append(lines, fmt.Sprintf("units with no entry: %s (run `%s`)", strings.Join(d.OrphanUnits, ", "), gc))
	}
	if len(d.NotRunning) > 0 {
		lines = append(lines, fmt.Sprintf("registered but not running: %s (run `kato-manager start ID`, or apply the fleet file again)", strings.Join(d.NotRunning, ", ")))
	}
	if len(d.StaleSettings) > 0 {
		lines = append(lines, fmt.Sprintf("running with other settings than their registry entries and kato.toml give them: %s (run `kato-manager restart ID`, or apply the fleet file again)", strings.Join(d.StaleSettings, ", ")))
	}
	return lines
}

// GroupResult writes what a start or restart of a group did; verb is
// "started" or "restarted".
func GroupResult(w io.Writer, verb string, res *supervisor.GroupResult) {
	for _, id := range res.Done {
		fmt.Fprintf(w, "%s %s\n", verb, id)
	}
	for _, id := range res.Running {
		fmt.Fprintf(w, "%s is already running\n", id)
	}
	for _, fl := range res.Failed {
		fmt.Fprintf(w, "! %s failed: %v\n", fl.ID, fl.Err)
		for _, l := range fl.Journal {
			fmt.Fprintf(w, "  | %s\n", l)
		}
	}
	fmt.Fprintf(w, "%d %s, %d already running, %d failed\n", len(res.Done), verb, len(res.Running), len(res.Failed))
}

// StartError writes why an instance did not start, and the last lines of
// its journal, after prefix.
func StartError(w io.Writer, prefix string, se *supervisor.StartError) {
	fmt.Fprintf(w, "%s %v\n", prefix, se.Err)
	if len(se.Journal) > 0 {
		fmt.Fprintf(w, "last log lines of %s:\n", se.Unit)
		for _, l := range se.Journal {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// processorLabel is the processor column: its name and generation.
func processorLabel(v supervisor.InstanceView) string {
	if v.Generation == "" {
		return v.Processor + " (missing)"
	}
	return v.Processor + " (" + v.Generation + ")"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ZMQText is ", ZMQ port N" for an instance with a ZMQ port, "" for one
// without (generation B).
func ZMQText(port int) string {
	if port == 0 {
		return ""
	}
	return fmt.Sprintf(", ZMQ port %d", port)
}

// OrDash is s, or "-" for none.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dash(pid int32) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func uptime(seconds int64, pid int32) string {
	if pid == 0 {
		return "-"
	}
	return (time.Duration(seconds) * time.Second).String()
}

func memory(b uint64) string {
	if b == 0 {
		return "-"
	}
	const unit = 1024
	v, suffix := float64(b), "B"
	for _, s := range []string{"K", "M", "G", "T"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f%s", v, suffix)
}
