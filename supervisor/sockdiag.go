package supervisor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listeningSockets returns the inodes of the listening TCP sockets (IPv4
// and IPv6) of this process's network namespace, with their local ports,
// asked of the kernel over sock_diag(7). A dump of listening sockets only
// walks the kernel's listening hash; /proc/net/tcp walks every socket of the
// host (of every namespace, its established and TIME-WAIT ones included),
// which on a host starting 200 processors cost 30ms of CPU per read.
func listeningSockets() (map[uint64]int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	out := map[uint64]int{}
	for seq, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := dumpListening(fd, uint32(seq+1), family, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// The sizes of struct inet_diag_req_v2 and struct inet_diag_msg
// (linux/inet_diag.h), and where the message holds the local port (big
// endian) and the inode.
const (
	inetDiagReqSize  = 56
	inetDiagMsgSize  = 72
	inetDiagMsgSport = 4
	inetDiagMsgInode = 68
	// tcpStateListen is TCP_LISTEN of the kernel's TCP states.
	tcpStateListen = 10
)

// dumpListening asks for the listening TCP sockets of family and adds their
// inodes and ports to out.
func dumpListening(fd int, seq uint32, family uint8, out map[uint64]int) error {
	req := make([]byte, unix.NLMSG_HDRLEN+inetDiagReqSize)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], seq)
	body := req[unix.NLMSG_HDRLEN:]
	body[0] = family
	body[1] = unix.IPPROTO_TCP
	ne.PutUint32(body[4:], 1<<tcpStateListen) // idiag_states
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 32*1024)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("sock_diag answer: %w", err)
		}
		for _, msg := range msgs {
			if msg.Header.Seq != seq {
				continue
			}
			switch msg.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(msg.Data) >= 4 {
					if errno := int32(ne.Uint32(msg.Data)); errno != 0 {
						return fmt.Errorf("sock_diag answer: %w", unix.Errno(-errno))
					}
				}
				return errors.New("sock_diag answer: an error without a code")
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(msg.Data) < inetDiagMsgSize {
					return fmt.Errorf("sock_diag answer: a message of %d bytes, want %d", len(msg.Data), inetDiagMsgSize)
				}
				port := binary.BigEndian.Uint16(msg.Data[inetDiagMsgSport:])
				out[uint64(ne.Uint32(msg.Data[inetDiagMsgInode:]))] = int(port)
			}
		}
	}
}

// socketInodes returns the inodes of the sockets among the open files of
// process pid, from its /proc/PID/fd links; none when it is gone.
func socketInodes(pid int32) []uint64 {
	dir := "/proc/" + strconv.Itoa(int(pid)) + "/fd/"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, fd := range fds {
		link, err := os.Readlink(dir + fd.Name())
		if err != nil {
			continue
		}
		rest, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		if inode, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); err == nil {
			out = append(out, inode)
		}
	}
	return out
}

// sameNetNamespace says whether process pid is in this process's network
// namespace; the error says it cannot be told (the process is gone).
func sameNetNamespace(pid int32) (bool, error) {
	var self, other unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/"+strconv.Itoa(int(pid))+"/ns/net", &other); err != nil {
		return false, err
	}
	return self.Dev == other.Dev && self.Ino == other.Ino, nil
}
