// Package graceful makes an http.Server whose Shutdown returns as soon as
// the requests in flight are answered.
//
// net/http's Shutdown closes idle keep-alive connections at once but waits
// up to five seconds for a connection that was opened and has not yet sent
// a request. Go's own client leaves such connections behind: when it dials
// while a previous connection is on its way back to the pool, the dialed
// one goes to the pool unused. Server closes those connections when
// Shutdown starts, as it does the idle ones.
package graceful

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Server returns a server for handler with a ten-second header timeout.
func Server(handler http.Handler) *http.Server {
	var mu sync.Mutex
	fresh := map[net.Conn]struct{}{}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, state http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if state == http.StateNew {
				fresh[c] = struct{}{}
			} else {
				delete(fresh, c)
			}
		},
	}
	srv.RegisterOnShutdown(func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range fresh {
			c.Close()
			delete(fresh, c)
		}
	})
	return srv
}
