package supervisor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
)

// TestDialConnectsInTheBackground: Dial returns while the connection is
// being made; Wait and Manager wait for it and hand on its error.
func TestDialConnectsInTheBackground(t *testing.T) {
	release := make(chan struct{})
	refused := errors.New("refused")
	d := Dial(context.Background(), func(context.Context) (*DBus, error) {
		<-release
		return nil, refused
	})
	waited := make(chan error, 1)
	go func() {
		_, err := d.Wait()
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v before the connection was made", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-waited; !errors.Is(err, refused) {
		t.Errorf("Wait: %v, want %v", err, refused)
	}
	if m, sd, err := d.Manager(&config.Config{}, nil, config.Paths{}); !errors.Is(err, refused) || m != nil || sd != nil {
		t.Errorf("Manager after a refused connection: %v %v %v", m, sd, err)
	}
	d.Drop() // nothing to close
}

// TestDialManagerIsTheHosts: the manager made on a connection is this
// host's, in the scope of the paths given.
func TestDialManagerIsTheHosts(t *testing.T) {
	conn := &DBus{}
	cfg := &config.Config{}
	reg := config.OpenRegistry(t.TempDir() + "/instances.toml")
	paths := config.Paths{User: true, UnitDir: "/u"}
	m, sd, err := Dial(context.Background(), func(context.Context) (*DBus, error) { return conn, nil }).Manager(cfg, reg, paths)
	if err != nil {
		t.Fatal(err)
	}
	if sd != conn || m.Systemd != Systemd(conn) || m.Config != cfg || m.Registry != reg || m.Paths != paths {
		t.Errorf("manager %+v on %p, want connection %p, config, registry and paths given", m, sd, conn)
	}
	if j, ok := m.Journal.(SystemJournal); !ok || !j.User {
		t.Errorf("journal %#v, want the user's SystemJournal", m.Journal)
	}
	if _, ok := m.Ports.(HostPorts); !ok {
		t.Errorf("ports %#v, want HostPorts", m.Ports)
	}
	if _, ok := m.Processes.(HostProcesses); !ok {
		t.Errorf("processes %#v, want HostProcesses", m.Processes)
	}
}
