package sdharness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// console is the pseudo-terminal that serves as a machine's /dev/console.
// systemd only writes its boot status to a terminal, so a plain file would
// stay empty. Everything written to it is copied to a log file on the host.
type console struct {
	ptsPath string
	master  *os.File
	pts     *os.File // held open so that reads of master do not fail before systemd opens the console
	copied  chan struct{}
	copyErr error // set before copied is closed
	log     *os.File
}

// openConsole allocates a pseudo-terminal and starts copying its output to
// logPath.
func openConsole(logPath string) (*console, error) {
	// Opened non-blocking so that the runtime poller owns it and Close
	// interrupts a pending read.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open console pseudo-terminal: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("unlock console pseudo-terminal: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("number console pseudo-terminal: %w", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	ptsPath := fmt.Sprintf("/dev/pts/%d", n)
	pts, err := os.OpenFile(ptsPath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("open console terminal %s: %w", ptsPath, err)
	}
	log, err := os.Create(logPath)
	if err != nil {
		pts.Close()
		master.Close()
		return nil, fmt.Errorf("create console log: %w", err)
	}
	c := &console{ptsPath: ptsPath, master: master, pts: pts, log: log, copied: make(chan struct{})}
	go func() {
		defer close(c.copied)
		_, err := io.Copy(log, master)
		// Once every terminal side is closed the master reports EIO:
		// that is the end of the output, not a failure.
		if err != nil && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
			c.copyErr = err
		}
	}()
	return c, nil
}

// Close stops the copying after draining what the machine wrote. Call it
// only once the machine is dead.
func (c *console) Close() error {
	var errs []error
	if err := c.pts.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close console terminal %s: %w", c.ptsPath, err))
	}
	select {
	case <-c.copied:
	case <-time.After(5 * time.Second):
		// A process outside the machine still holds the terminal open;
		// stop reading regardless.
	}
	if err := c.master.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close console pseudo-terminal: %w", err))
	}
	<-c.copied
	if c.copyErr != nil {
		errs = append(errs, fmt.Errorf("copy console output: %w", c.copyErr))
	}
	if err := c.log.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close console log: %w", err))
	}
	return errors.Join(errs...)
}
