package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/internal/atomicfile"
)

// StateFileName is the file name of a front's saved server states, beside
// its admin socket: HAProxy reads it when it starts a new worker
// (server-state-file), so that a member drained, in maintenance or given a
// weight through the admin socket keeps it across a reload.
const StateFileName = "servers.state"

// StateFilePath returns the saved server states of the front of group.
func StateFilePath(group string) string { return StateFileFor(SocketPath(group)) }

// StateFileFor returns the saved server states beside the admin socket at
// admin.
func StateFileFor(admin string) string { return filepath.Join(filepath.Dir(admin), StateFileName) }

// emptyState is a state file with HAProxy's version line and no server:
// what a front reads when nothing was saved for it, without the warning a
// missing or empty file gives.
const emptyState = "1\n"

// Commander runs one command on a front's runtime API: the Client.
type Commander interface {
	Do(ctx context.Context, command string) (string, error)
}

// KeepStates returns the lines of `show servers state` (states) that g
// keeps across a reload: those of g's members at the same address and
// port. HAProxy matches a saved line by backend and server names and
// applies its port even when the configuration changed it, so the line of
// a member that moved is left out (it starts from its configuration);
// a changed configured weight wins over a saved one by HAProxy's own rule.
func KeepStates(states string, g Group) ([]byte, error) {
	want := map[string]Member{}
	for _, m := range g.Members {
		want[g.Backend(m.ID)+"/"+m.ID] = m
	}
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(states))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var col map[string]int
	version := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case !version:
			if line != "1" {
				return nil, fmt.Errorf("haproxy show servers state: version %q, want 1", line)
			}
			version = true
			b.WriteString(line + "\n")
			continue
		case strings.HasPrefix(line, "#"):
			col = map[string]int{}
			for i, name := range strings.Fields(strings.TrimPrefix(line, "#")) {
				col[name] = i
			}
			for _, name := range []string{"be_name", "srv_name", "srv_addr", "srv_port"} {
				if _, ok := col[name]; !ok {
					return nil, fmt.Errorf("haproxy show servers state: no column %s in %q", name, line)
				}
			}
			b.WriteString(line + "\n")
			continue
		}
		if col == nil {
			return nil, fmt.Errorf("haproxy show servers state: a server before the header: %q", line)
		}
		f := strings.Fields(line)
		get := func(name string) string {
			if i := col[name]; i < len(f) {
				return f[i]
			}
			return ""
		}
		m, ok := want[get("be_name")+"/"+get("srv_name")]
		if !ok || get("srv_port") != strconv.Itoa(m.Port) {
			continue
		}
		if a, err := netip.ParseAddr(m.Address); err == nil {
			if s, err := netip.ParseAddr(get("srv_addr")); err != nil || s.Unmap() != a.Unmap() {
				continue
			}
		}
		b.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("haproxy show servers state: %w", err)
	}
	if !version {
		return nil, errors.New("haproxy show servers state: empty answer")
	}
	return []byte(b.String()), nil
}

// workerPid is the pid of the worker answering on the admin socket.
func workerPid(ctx context.Context, c Commander) (string, error) {
	out, err := c.Do(ctx, "show info")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("haproxy show info: no Pid in %q", firstLine(out))
}

// ReloadKeepingState reloads a running front on the configuration of g
// (reload does it, as systemctl reload) so that its members keep their
// runtime states: it saves `show servers state`, less the members g moved
// or dropped (KeepStates), to path, the file the configuration names; runs
// reload; waits, at most wait, for the new worker on the admin socket (it
// has read the file by then); and empties the file again, so that a later
// reload by hand does not bring back states since changed. The file is
// written 0644 by the caller (root, or the user of a user scope), inside
// the front's 0700 runtime directory: the front reads it and nothing else
// writes it.
//
// When the states cannot be saved the front is reloaded anyway, starting
// every member from its configuration, and the error says so.
func ReloadKeepingState(ctx context.Context, c Commander, g Group, path string, wait time.Duration, reload func(context.Context) error) error {
	before, err := workerPid(ctx, c)
	var saveErr error
	if err == nil {
		var states string
		if states, err = c.Do(ctx, "show servers state"); err == nil {
			var kept []byte
			if kept, err = KeepStates(states, g); err == nil {
				err = atomicfile.Write(path, kept, 0o644, atomicfile.Options{})
			}
		}
	}
	if err != nil {
		saveErr = fmt.Errorf("members' runtime states not kept across the reload: %w", err)
		// A file left by an earlier save must not be read instead.
		if rerr := atomicfile.Write(path, []byte(emptyState), 0o644, atomicfile.Options{}); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			saveErr = errors.Join(saveErr, rerr)
		}
	}
	if err := reload(ctx); err != nil {
		return errors.Join(err, saveErr)
	}
	if saveErr != nil {
		return saveErr
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if pid, err := workerPid(wctx, c); err == nil && pid != before {
			break
		}
		select {
		case <-wctx.Done():
			// Left for the next worker to read: it is what the members
			// are now.
			return fmt.Errorf("front of group %s: no new worker within %s of the reload", g.Name, wait)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return atomicfile.Write(path, []byte(emptyState), 0o644, atomicfile.Options{})
}
