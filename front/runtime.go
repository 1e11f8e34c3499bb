package front

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// AdminState is what kato-manager asks of a member through the runtime API.
type AdminState string

// The administrative states of a member (HAProxy's `set server ... state`).
const (
	Ready AdminState = "ready" // in the rotation when its checks pass
	Drain AdminState = "drain" // no new requests; those in flight finish
	Maint AdminState = "maint" // out: no request at all, checks stopped
)

// State is a member's state as the front sees it.
type State string

// The states a member can be in.
const (
	Up          State = "up"          // in the rotation
	Draining    State = "draining"    // finishing its requests, given no new ones
	Down        State = "down"        // failing its ready check
	Maintenance State = "maintenance" // taken out by hand
)

// MemberStats is one member as the front sees it.
type MemberStats struct {
	Backend  string
	ID       string
	State    State
	Status   string // HAProxy's own word, such as "UP 1/2" or "DRAIN"
	Sessions int    // connections open to it now
	Weight   int
	Requests uint64 // requests sent to it since the front started
	Errors   uint64 // connection and answer errors on it
}

// Stats is a front's counters and its members' states.
type Stats struct {
	Requests  uint64 // HTTP requests received by the front
	Errors    uint64 // requests that failed: bad requests, 5xx answers, members unreachable
	Responses map[string]uint64
	Members   []MemberStats
}

// Member returns the stats of the member id.
func (s Stats) Member(id string) (MemberStats, bool) {
	for _, m := range s.Members {
		if m.ID == id {
			return m, true
		}
	}
	return MemberStats{}, false
}

// Client talks to a front's HAProxy process over its admin socket.
type Client struct {
	socket string
}

// NewClient returns a client of the admin socket at path.
func NewClient(path string) *Client { return &Client{socket: path} }

// ErrRuntime is wrapped by the errors HAProxy answers to a command.
var ErrRuntime = errors.New("haproxy refused the command")

// Do sends one command and returns HAProxy's answer.
func (c *Client) Do(ctx context.Context, command string) (string, error) {
	if strings.ContainsAny(command, "\n\r;") {
		return "", fmt.Errorf("haproxy command %q: must be one command on one line", command)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return "", fmt.Errorf("front admin socket: %w", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return "", fmt.Errorf("haproxy %s: %w", command, err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		return "", fmt.Errorf("haproxy %s: %w", command, err)
	}
	return string(out), nil
}

// SetState sets the administrative state of the server of a member (see
// Group.Backend).
func (c *Client) SetState(ctx context.Context, backend, server string, s AdminState) error {
	switch s {
	case Ready, Drain, Maint:
	default:
		return fmt.Errorf("member state %q: must be ready, drain or maint", s)
	}
	cmd := "set server " + backend + "/" + server + " state " + string(s)
	out, err := c.Do(ctx, cmd)
	if err != nil {
		return err
	}
	if msg := strings.TrimSpace(out); msg != "" {
		return fmt.Errorf("%s: %w: %s", cmd, ErrRuntime, msg)
	}
	return nil
}

// Stats reads the front's counters and its members' states (`show stat`).
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	out, err := c.Do(ctx, "show stat")
	if err != nil {
		return Stats{}, err
	}
	return parseStats(out)
}

// parseStats reads the CSV of `show stat`, by the names of its header.
func parseStats(out string) (Stats, error) {
	r := csv.NewReader(bufio.NewReader(strings.NewReader(strings.TrimPrefix(out, "# "))))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return Stats{}, fmt.Errorf("haproxy show stat: unexpected answer %q", firstLine(out))
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, name := range []string{"pxname", "svname", "scur", "status", "weight", "stot", "econ", "eresp", "req_tot", "ereq", "hrsp_5xx"} {
		if _, ok := col[name]; !ok {
			return Stats{}, fmt.Errorf("haproxy show stat: no column %s in %q", name, firstLine(out))
		}
	}
	get := func(row []string, name string) string {
		if i := col[name]; i < len(row) {
			return row[i]
		}
		return ""
	}
	num := func(row []string, name string) uint64 {
		n, _ := strconv.ParseUint(get(row, name), 10, 64)
		return n
	}
	s := Stats{Responses: map[string]uint64{}}
	for _, row := range rows[1:] {
		switch px, sv := get(row, "pxname"), get(row, "svname"); {
		case px == "front" && sv == "FRONTEND":
			s.Requests = num(row, "req_tot")
			s.Errors = num(row, "ereq") + num(row, "hrsp_5xx")
			for _, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
				s.Responses[class] = num(row, "hrsp_"+class)
			}
		case sv != "FRONTEND" && sv != "BACKEND" && px != "stats":
			status := get(row, "status")
			weight, _ := strconv.Atoi(get(row, "weight"))
			sessions, _ := strconv.Atoi(get(row, "scur"))
			s.Members = append(s.Members, MemberStats{
				Backend: px, ID: sv, Status: status, State: stateOf(status),
				Sessions: sessions, Weight: weight,
				Requests: num(row, "stot"), Errors: num(row, "econ") + num(row, "eresp"),
			})
		}
	}
	return s, nil
}

// stateOf maps HAProxy's status column to a member's state: "UP", "UP 1/2"
// (going down), "NOLB" are up; "DOWN 1/2" (coming up) and "DOWN" are down.
func stateOf(status string) State {
	switch word, _, _ := strings.Cut(status, " "); word {
	case "UP", "NOLB", "no":
		return Up
	case "DRAIN":
		return Draining
	case "MAINT":
		return Maintenance
	default:
		return Down
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
