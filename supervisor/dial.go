package supervisor

import (
	"context"

	"github.com/kato-manager/kato-manager/config"
)

// Dialing is a connection to systemd being made in the background, while a
// command reads its configuration and checks what it was given: a few
// round trips with systemd that the command need not wait for.
type Dialing struct {
	done chan struct{}
	sd   *DBus
	err  error
}

// Dial starts connect (Connect, or a wrapper of it that words its errors)
// in the background; Wait, Manager or Drop end it.
func Dial(ctx context.Context, connect func(context.Context) (*DBus, error)) *Dialing {
	d := &Dialing{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.sd, d.err = connect(ctx)
	}()
	return d
}

// Wait waits for the connection.
func (d *Dialing) Wait() (*DBus, error) {
	<-d.done
	return d.sd, d.err
}

// Drop closes the connection once it is made, for a command that ends
// before it needs it.
func (d *Dialing) Drop() {
	go func() {
		if sd, err := d.Wait(); err == nil {
			sd.Close()
		}
	}()
}

// Manager waits for the connection and makes the manager of this host's
// instances on it: the host's ports, processes and journal, the registry
// reg, with the configuration cfg and the scope's paths. Closing the
// connection, when done with the manager, is the caller's.
func (d *Dialing) Manager(cfg *config.Config, reg *config.RegistryFile, paths config.Paths) (*Manager, *DBus, error) {
	sd, err := d.Wait()
	if err != nil {
		return nil, nil, err
	}
	m := &Manager{Systemd: sd, Config: cfg, Registry: reg, Ports: HostPorts{}, Processes: HostProcesses{},
		Journal: SystemJournal{User: paths.User}, Paths: paths}
	return m, sd, nil
}
