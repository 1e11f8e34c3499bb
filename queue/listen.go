package queue

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// listener is the connection a PostgreSQL queue LISTENs on, kept open
// between waits so that no notification sent between two waits is missed:
// the server queues them on the session. One waiter uses it at a time; a
// second concurrent waiter polls instead.
type listener struct {
	config *pgx.ConnConfig
	mu     sync.Mutex
	conn   *pgx.Conn
}

// waitNotified is WaitForWork on PostgreSQL: LISTEN first, then look, then
// wait for a notification and look again, until ctx ends.
func (q *Queue) waitNotified(ctx context.Context) (bool, error) {
	l := q.listener
	if !l.mu.TryLock() {
		return q.pollDue(ctx)
	}
	defer l.mu.Unlock()
	if l.conn == nil || l.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, l.config)
		if err != nil {
			return false, err
		}
		if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
			conn.Close(context.Background())
			return false, err
		}
		l.conn = conn
	}
	for {
		if ok, err := q.workDue(ctx, q.db); err != nil || ok {
			return ok, err
		}
		if _, err := l.conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			// A broken session is opened again on the next wait.
			l.conn.Close(context.Background())
			l.conn = nil
			return false, err
		}
	}
}

// pollDue looks for due work every changeCheck until ctx ends.
func (q *Queue) pollDue(ctx context.Context) (bool, error) {
	tick := time.NewTicker(q.changeCheck)
	defer tick.Stop()
	for {
		if ok, err := q.workDue(ctx, q.db); err != nil || ok {
			return ok, err
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-tick.C:
		}
	}
}

func (l *listener) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close(context.Background())
		l.conn = nil
	}
}
