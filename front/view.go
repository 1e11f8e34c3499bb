package front

import (
	"bufio"
	"bytes"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// StatsSocketName is the file name of a front's read-only stats socket,
// beside its admin socket.
const StatsSocketName = "stats.sock"

// StatsSocketPath returns the read-only stats socket of the front of
// group: `show stat` answers there, no command changes anything.
func StatsSocketPath(group string) string { return StatsSocketFor(SocketPath(group)) }

// StatsSocketFor returns the read-only stats socket beside the admin
// socket at admin.
func StatsSocketFor(admin string) string { return filepath.Join(filepath.Dir(admin), StatsSocketName) }

// Listening is where a rendered front listens and how it balances, as its
// configuration says.
type Listening struct {
	Address string // "" is every interface
	Port    int
	Balance string // leastconn, roundrobin, path or hash:HEADER
}

// ReadRendered reads the address, port and balance back from a
// configuration Render produced; ok is false when it has no front's bind.
func ReadRendered(cfg []byte) (l Listening, ok bool) {
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			section = strings.Join(fields, " ")
			continue
		}
		switch {
		case section == "frontend front" && fields[0] == "bind" && len(fields) > 1:
			host, port, found := cutLast(fields[1], ":")
			n, err := strconv.Atoi(port)
			if !found || err != nil {
				continue
			}
			host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
			if _, err := netip.ParseAddr(host); err == nil {
				l.Address = host
			}
			l.Port, ok = n, true
		case section == "frontend front" && fields[0] == "use_backend":
			l.Balance = Path
		case section == "backend members" && fields[0] == "balance" && len(fields) > 1:
			if h, found := strings.CutPrefix(fields[1], "hdr("); found {
				l.Balance = hashPrefix + strings.TrimSuffix(h, ")")
			} else {
				l.Balance = fields[1]
			}
		}
	}
	return l, ok
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
