package web

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgworker"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

// refusingSystemd is a systemd that must not be reached: it records every
// call and refuses it.
type refusingSystemd struct {
	mu    sync.Mutex
	calls []string
}

var errNotReached = errors.New("systemd must not be reached")

func (s *refusingSystemd) record(call string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	return errNotReached
}

func (s *refusingSystemd) StartUnit(ctx context.Context, name string) error {
	return s.record("start " + name)
}
func (s *refusingSystemd) StopUnit(ctx context.Context, name string) error {
	return s.record("stop " + name)
}
func (s *refusingSystemd) RestartUnit(ctx context.Context, name string) error {
	return s.record("restart " + name)
}
func (s *refusingSystemd) ReloadUnit(ctx context.Context, name string) error {
	return s.record("reload " + name)
}
func (s *refusingSystemd) ResetFailedUnit(ctx context.Context, name string) error {
	return s.record("reset-failed " + name)
}
func (s *refusingSystemd) EnableUnits(ctx context.Context, names []string) error {
	return s.record("enable")
}
func (s *refusingSystemd) DisableUnits(ctx context.Context, names []string) error {
	return s.record("disable")
}
func (s *refusingSystemd) Reload(ctx context.Context) error { return s.record("reload") }
func (s *refusingSystemd) ListUnits(ctx context.Context, patterns ...string) ([]supervisor.UnitState, error) {
	return nil, s.record("list")
}
func (s *refusingSystemd) Unit(ctx context.Context, name string) (supervisor.UnitState, error) {
	return supervisor.UnitState{}, s.record("unit " + name)
}
func (s *refusingSystemd) ServiceProperties(ctx context.Context, name string) (supervisor.UnitState, error) {
	return supervisor.UnitState{}, s.record("properties " + name)
}
func (s *refusingSystemd) UnitRun(ctx context.Context, name string) (supervisor.UnitState, error) {
	return supervisor.UnitState{}, s.record("run " + name)
}
func (s *refusingSystemd) WatchUnits(ctx context.Context, changed func(string)) (<-chan error, error) {
	return nil, s.record("watch")
}
func (s *refusingSystemd) UnitFileExists(ctx context.Context, name string) (bool, error) {
	return false, s.record("unit-file " + name)
}
func (s *refusingSystemd) Version(ctx context.Context) (string, error) {
	return "", s.record("version")
}

// actionServer serves a dashboard with the token whose manager's systemd
// refuses every call and whose queue is a real database.
func actionServer(t *testing.T) (srv *httptest.Server, sd *refusingSystemd, registry string, q *kgworker.Queue) {
	t.Helper()
	dir := t.TempDir()
	q, err := kgworker.Open(context.Background(), filepath.Join(dir, "kg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	sd = &refusingSystemd{}
	registry = filepath.Join(dir, "instances.toml")
	m := &supervisor.Manager{Systemd: sd, Config: config.Default(), Registry: config.OpenRegistry(registry)}
	d, err := newDashboard(m, nil, kgdb.NewLocal(q), kgdb.NewLocal(q), dashboardOptions{token: actionToken, listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.routes(mux)
	srv = httptest.NewServer(d.guard(mux))
	t.Cleanup(srv.Close)
	return srv, sd, registry, q
}

const actionToken = "0123456789abcdef0123456789abcdef"

// postAction posts a form to an action, with the bearer token when
// withToken, and returns the status and the body.
func postAction(t *testing.T, srv *httptest.Server, action string, form url.Values, withToken bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/actions/"+action, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if withToken {
		req.Header.Set("Authorization", "Bearer "+actionToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestWebStartRefusesBadInput: the start form's bad input answers 400
// with the field, the value and the rule, as `kato-manager start` says
// them, before anything is written or systemd is asked anything; without
// the token the form is refused.
func TestWebStartRefusesBadInput(t *testing.T) {
	srv, sd, registry, _ := actionServer(t)
	for _, c := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"id": {"bad id!"}}, "invalid id \"bad id!\""},
		{url.Values{"id": {"a"}, "port": {"abc"}}, "invalid --port abc: must be a whole number"},
		{url.Values{"id": {"a"}, "port": {"0"}}, "invalid port 0: must be between 1 and 65535"},
		{url.Values{"id": {"a"}, "port": {"70000"}}, "invalid port 70000: must be between 1 and 65535"},
		{url.Values{"id": {"a"}, "zmq-port": {"-3"}}, "invalid zmq_port -3: must be between 1 and 65535"},
		{url.Values{"id": {"a"}, "processor": {"nope"}}, "invalid processor nope: must name a processor of kato.toml: default"},
		{url.Values{"id": {"a"}, "network": {"bridge"}}, "invalid network bridge: must be host or private"},
		{url.Values{"id": {"a"}, "persistence": {"0"}}, "invalid --persistence 0: must be between 1 and 100000"},
		{url.Values{"id": {"a"}, "recall-threshold": {"1.5"}}, "invalid --recall-threshold 1.5: must be between 0 and 1"},
		{url.Values{"id": {"a"}, "recall-threshold": {"x"}}, "invalid --recall-threshold x: must be a number"},
		{url.Values{"id": {"a"}, "no-sort": {"maybe"}}, "invalid --no-sort maybe: is a switch: on, or left out"},
		{url.Values{"id": {"a"}, "processor-command": {"/bin/sh -c evil"}}, "invalid processor-command \"/bin/sh -c evil\": is not a setting of start"},
		{url.Values{"id": {"a"}, "tag": {"x"}}, "invalid tag x: is not a setting of start"},
	} {
		code, body := postAction(t, srv, "start", c.form, true)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("start %v: %d %q, want 400 and %q", c.form, code, body, c.want)
		}
	}
	if code, _ := postAction(t, srv, "start", url.Values{"id": {"a"}}, false); code != http.StatusUnauthorized {
		t.Errorf("start without the token: %d, want 401", code)
	}
	if len(sd.calls) != 0 {
		t.Errorf("systemd was asked %q", sd.calls)
	}
	if _, err := os.Stat(registry); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the registry was written: %v", err)
	}
}

// TestWebStartGoesThroughStart: good input reaches the manager's Start:
// the request passes validation and the start stops at systemd (which
// refuses here), and the refusal is answered, not swallowed.
func TestWebStartGoesThroughStart(t *testing.T) {
	srv, sd, _, _ := actionServer(t)
	code, body := postAction(t, srv, "start", url.Values{"id": {"fresh"}, "port": {"8123"}, "persistence": {"7"}, "no-sort": {"on"}}, true)
	if code != http.StatusInternalServerError || !strings.Contains(body, errNotReached.Error()) {
		t.Errorf("start: %d %q", code, body)
	}
	if len(sd.calls) == 0 {
		t.Error("the start did not reach systemd")
	}
}

// TestWebRequeueAll: requeue-all asks first; confirmed, it moves every
// completed, failed or skipped document back to pending, as `queue
// requeue --all`; a negative priority is refused and changes nothing;
// without the token nothing happens.
func TestWebRequeueAll(t *testing.T) {
	ctx := context.Background()
	srv, _, _, q := actionServer(t)
	for c := int64(1); c <= 3; c++ {
		if _, err := q.Enqueue(ctx, c, 1); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite3", q.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE kg_processing_queue SET status = 'completed' WHERE content_id = 1; UPDATE kg_processing_queue SET status = 'failed', error_message = 'boom' WHERE content_id = 2"); err != nil {
		t.Fatal(err)
	}
	pending := func() int {
		t.Helper()
		c, err := q.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c.Pending
	}
	if code, _ := postAction(t, srv, "requeue-all", url.Values{"confirm": {"yes"}}, false); code != http.StatusUnauthorized || pending() != 1 {
		t.Errorf("requeue-all without the token: %d, %d pending", code, pending())
	}
	if code, body := postAction(t, srv, "requeue-all", nil, true); code != http.StatusOK || !strings.Contains(body, "Queue every completed, failed and skipped document again?") || pending() != 1 {
		t.Errorf("unconfirmed requeue-all: %d, %d pending\n%s", code, pending(), body)
	}
	if code, body := postAction(t, srv, "requeue-all", url.Values{"confirm": {"yes"}, "priority": {"-1"}}, true); code != http.StatusBadRequest ||
		!strings.Contains(body, "invalid priority -1: must be a whole number, zero or more") || pending() != 1 {
		t.Errorf("requeue-all with priority -1: %d %q, %d pending", code, body, pending())
	}
	if code, body := postAction(t, srv, "requeue-all", url.Values{"confirm": {"yes"}}, true); code != http.StatusOK || !strings.Contains(body, "2 document(s) queued again") || pending() != 3 {
		t.Errorf("requeue-all: %d %q, %d pending", code, body, pending())
	}
}

// TestMessagesAreTheDashboardsOwn: text in the URL (?notice=, ?error=) is
// never shown as the dashboard's message; an action's outcome is kept on
// the server for the session's next page, shown once.
func TestMessagesAreTheDashboardsOwn(t *testing.T) {
	srv, _, _, _ := actionServer(t)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	page := func(path string) string {
		t.Helper()
		code, _, body := get(t, client, srv.URL+path, map[string]string{"Accept": "text/html"})
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, code, body)
		}
		return body
	}
	resp, err := client.PostForm(srv.URL+"/login", url.Values{"token": {actionToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	const planted = "Your token expired: log in at evil.example"
	body := page("/documents?notice=" + url.QueryEscape(planted) + "&error=" + url.QueryEscape(planted))
	if strings.Contains(body, "evil.example") || strings.Contains(body, `class="notice"`) || strings.Contains(body, `class="error"`) {
		t.Errorf("the page shows text of its URL:\n%s", body)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)
	if csrf == nil {
		t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	post := func(action string, form url.Values) *http.Response {
		t.Helper()
		form.Set("csrf", csrf[1])
		req, _ := http.NewRequest("POST", srv.URL+"/actions/"+action, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		resp, err := http.DefaultTransport.RoundTrip(withCookies(req, jar))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct {
		action string
		form   url.Values
		class  string
		want   string
	}{
		{"retry", url.Values{}, "notice", "0 failed item(s) queued again"},
		{"priority", url.Values{"item": {"x"}, "priority": {"2"}}, "error", "invalid item x: must be a positive whole number"},
	} {
		resp := post(c.action, c.form)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
			t.Errorf("%s: %d to %q, want 303 to /", c.action, resp.StatusCode, loc)
		}
		if body := page("/documents"); !strings.Contains(body, `<p class="`+c.class+`" role=`) || !strings.Contains(body, c.want) {
			t.Errorf("%s: the next page lacks the %s %q:\n%s", c.action, c.class, c.want, body)
		}
		if body := page("/documents"); strings.Contains(body, c.want) {
			t.Errorf("%s: the message is shown twice", c.action)
		}
	}
}

// withCookies adds the jar's cookies for the request's URL.
func withCookies(req *http.Request, jar http.CookieJar) *http.Request {
	for _, c := range jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	return req
}

// TestWebClearOlderThan: the dashboard's Clear with "older than" is `queue
// clear --status S --older-than AGE`: it asks first, refuses a bad age
// with the field, the value and the rule, and deletes only the items of
// the status that reached it longer ago than the age.
func TestWebClearOlderThan(t *testing.T) {
	ctx := context.Background()
	srv, _, _, q := actionServer(t)
	var ids []int64
	for c := int64(1); c <= 3; c++ {
		id, err := q.Enqueue(ctx, c, 1)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	db, err := sql.Open("sqlite3", q.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old, recent := queue.Stamp(q.Now().Add(-10*24*time.Hour)), queue.Stamp(q.Now().Add(-time.Hour))
	for _, row := range []struct {
		id int64
		at string
	}{{ids[0], old}, {ids[1], recent}} {
		if _, err := db.Exec("UPDATE kg_processing_queue SET status = 'failed', processed_at = ? WHERE id = ?", row.at, row.id); err != nil {
			t.Fatal(err)
		}
	}
	failed := func() int {
		t.Helper()
		c, err := q.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c.Failed
	}
	form := url.Values{"status": {"failed"}, "older_than": {"7d"}}
	if code, body := postAction(t, srv, "clear", form, true); code != http.StatusOK ||
		!strings.Contains(body, "Delete every failed item of the queue older than 7d?") || failed() != 2 {
		t.Errorf("unconfirmed clear: %d, %d failed\n%s", code, failed(), body)
	}
	bad := url.Values{"status": {"failed"}, "older_than": {"week"}, "confirm": {"yes"}}
	if code, body := postAction(t, srv, "clear", bad, true); code != http.StatusBadRequest ||
		!strings.Contains(body, `invalid older_than week: must be a whole number of days (7d) or a duration (36h, 90m), more than zero`) || failed() != 2 {
		t.Errorf("clear older than week: %d %q, %d failed", code, body, failed())
	}
	form.Set("confirm", "yes")
	if code, body := postAction(t, srv, "clear", form, true); code != http.StatusOK ||
		!strings.Contains(body, "1 failed item(s) older than 7d deleted") || failed() != 1 {
		t.Errorf("clear older than 7d: %d %q, %d failed", code, body, failed())
	}
	var left int64
	if err := db.QueryRow("SELECT id FROM kg_processing_queue WHERE status = 'failed'").Scan(&left); err != nil || left != ids[1] {
		t.Errorf("the failed item left is %d (%v), want the recent one %d", left, err, ids[1])
	}
}
