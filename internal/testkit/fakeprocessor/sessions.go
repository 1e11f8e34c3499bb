package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// session is one generation-C session: a node's short-term memory and the
// settings it overrides, living until ExpiresAt.
type session struct {
	ID        string         `json:"session_id"`
	NodeID    string         `json:"node_id"`
	Config    map[string]any `json:"config"`
	TTL       int            `json:"ttl_seconds"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt time.Time      `json:"expires_at"`
}

// errNoSession is a session that does not exist or has expired.
var errNoSession = errors.New("session not found")

// sessionStore keeps sessions, their short-term memory and the learned
// patterns of each knowledge base. Generation C keeps sessions in Redis when
// REDIS_URL is set, so any worker or replica serves any session, and in the
// process's memory when not. The real processor keeps patterns in
// ClickHouse; the double keeps them beside the sessions.
type sessionStore interface {
	Create(ctx context.Context, s session) error
	Get(ctx context.Context, id string) (session, error)
	Update(ctx context.Context, s session) error
	Delete(ctx context.Context, id string) error
	Count(ctx context.Context) (int, error)
	Observe(ctx context.Context, id string, event []string) (int, error)
	STM(ctx context.Context, id string) ([][]string, error)
	ClearSTM(ctx context.Context, id string) error
	Learn(ctx context.Context, kb, name string, pattern [][]string) error
	Patterns(ctx context.Context, kb string) (map[string][][]string, error)
	// Ping says whether the store answers, for /health.
	Ping(ctx context.Context) error
	Backend() string
}

// memoryStore is one process's memory: what generation C uses without
// REDIS_URL, seen by no other worker or replica.
type memoryStore struct {
	mu       sync.Mutex
	sessions map[string]session
	stm      map[string][][]string
	kbs      map[string]map[string][][]string
	now      func() time.Time
}

func newMemoryStore() *memoryStore {
	return &memoryStore{sessions: map[string]session{}, stm: map[string][][]string{}, kbs: map[string]map[string][][]string{}, now: time.Now}
}

func (m *memoryStore) Backend() string                { return "memory" }
func (m *memoryStore) Ping(ctx context.Context) error { return nil }

func (m *memoryStore) Create(_ context.Context, s session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[s.ID] = s
	return nil
}

// live returns the session id unless it is missing or expired; m.mu held.
func (m *memoryStore) live(id string) (session, error) {
	s, ok := m.sessions[id]
	if !ok {
		return session{}, errNoSession
	}
	if !m.now().Before(s.ExpiresAt) {
		delete(m.sessions, id)
		delete(m.stm, id)
		return session{}, errNoSession
	}
	return s, nil
}

func (m *memoryStore) Get(_ context.Context, id string) (session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live(id)
}

func (m *memoryStore) Update(_ context.Context, s session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.live(s.ID); err != nil {
		return err
	}
	m.sessions[s.ID] = s
	return nil
}

func (m *memoryStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.live(id); err != nil {
		return err
	}
	delete(m.sessions, id)
	delete(m.stm, id)
	return nil
}

func (m *memoryStore) Count(context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id := range m.sessions {
		if _, err := m.live(id); err == nil {
			n++
		}
	}
	return n, nil
}

func (m *memoryStore) Observe(_ context.Context, id string, event []string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.live(id); err != nil {
		return 0, err
	}
	m.stm[id] = append(m.stm[id], slices.Clone(event))
	return len(m.stm[id]), nil
}

func (m *memoryStore) STM(_ context.Context, id string) ([][]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.live(id); err != nil {
		return nil, err
	}
	return slices.Clone(m.stm[id]), nil
}

func (m *memoryStore) ClearSTM(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.live(id); err != nil {
		return err
	}
	delete(m.stm, id)
	return nil
}

func (m *memoryStore) Learn(_ context.Context, kb, name string, pattern [][]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.kbs[kb] == nil {
		m.kbs[kb] = map[string][][]string{}
	}
	m.kbs[kb][name] = pattern
	return nil
}

func (m *memoryStore) Patterns(_ context.Context, kb string) (map[string][][]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.kbs[kb]), nil
}

// redisStore keeps everything in one Redis shared by every worker and
// replica: a session under kato:session:ID (JSON, expiring with the
// session), its short-term memory as the list kato:stm:ID, and each
// knowledge base's patterns in the hash kato:kb:KB.
type redisStore struct {
	rdb *redis.Client
}

func newRedisStore(rawURL string) (*redisStore, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid REDIS_URL: %v", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = time.Second, time.Second, time.Second
	return &redisStore{rdb: redis.NewClient(opts)}, nil
}

func (r *redisStore) Backend() string                { return "redis" }
func (r *redisStore) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

func sessionKey(id string) string { return "kato:session:" + id }
func stmKey(id string) string     { return "kato:stm:" + id }
func kbKey(kb string) string      { return "kato:kb:" + kb }

func (r *redisStore) Create(ctx context.Context, s session) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.rdb.Set(ctx, sessionKey(s.ID), data, time.Until(s.ExpiresAt)).Err()
}

func (r *redisStore) Get(ctx context.Context, id string) (session, error) {
	data, err := r.rdb.Get(ctx, sessionKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return session{}, errNoSession
	}
	if err != nil {
		return session{}, err
	}
	var s session
	if err := json.Unmarshal(data, &s); err != nil {
		return session{}, fmt.Errorf("session %s in Redis: %v", id, err)
	}
	return s, nil
}

func (r *redisStore) Update(ctx context.Context, s session) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	ok, err := r.rdb.SetXX(ctx, sessionKey(s.ID), data, time.Until(s.ExpiresAt)).Result()
	if err == nil && !ok {
		return errNoSession
	}
	return err
}

func (r *redisStore) Delete(ctx context.Context, id string) error {
	n, err := r.rdb.Del(ctx, sessionKey(id), stmKey(id)).Result()
	if err == nil && n == 0 {
		return errNoSession
	}
	return err
}

func (r *redisStore) Count(ctx context.Context) (int, error) {
	n := 0
	iter := r.rdb.Scan(ctx, 0, sessionKey("*"), 100).Iterator()
	for iter.Next(ctx) {
		n++
	}
	return n, iter.Err()
}

func (r *redisStore) Observe(ctx context.Context, id string, event []string) (int, error) {
	s, err := r.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	data, _ := json.Marshal(event)
	pipe := r.rdb.TxPipeline()
	push := pipe.RPush(ctx, stmKey(id), data)
	pipe.ExpireAt(ctx, stmKey(id), s.ExpiresAt)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	return int(push.Val()), nil
}

func (r *redisStore) STM(ctx context.Context, id string) ([][]string, error) {
	if _, err := r.Get(ctx, id); err != nil {
		return nil, err
	}
	items, err := r.rdb.LRange(ctx, stmKey(id), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([][]string, 0, len(items))
	for _, it := range items {
		var event []string
		if err := json.Unmarshal([]byte(it), &event); err != nil {
			return nil, fmt.Errorf("short-term memory of %s in Redis: %v", id, err)
		}
		out = append(out, event)
	}
	return out, nil
}

func (r *redisStore) ClearSTM(ctx context.Context, id string) error {
	if _, err := r.Get(ctx, id); err != nil {
		return err
	}
	return r.rdb.Del(ctx, stmKey(id)).Err()
}

func (r *redisStore) Learn(ctx context.Context, kb, name string, pattern [][]string) error {
	data, _ := json.Marshal(pattern)
	return r.rdb.HSet(ctx, kbKey(kb), name, data).Err()
}

func (r *redisStore) Patterns(ctx context.Context, kb string) (map[string][][]string, error) {
	all, err := r.rdb.HGetAll(ctx, kbKey(kb)).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string][][]string, len(all))
	for name, data := range all {
		var p [][]string
		if err := json.Unmarshal([]byte(data), &p); err != nil {
			return nil, fmt.Errorf("pattern %s in Redis: %v", name, err)
		}
		out[name] = p
	}
	return out, nil
}
