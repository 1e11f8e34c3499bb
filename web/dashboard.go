package web

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/kgpool"
	"github.com/kato-manager/kato-manager/queue"
	"github.com/kato-manager/kato-manager/supervisor"
)

//go:embed templates
var webFiles embed.FS

// dashboard is the web interface of serve: the fleet, the pool and the
// queue on one server-rendered page, the actions of the CLI behind the
// token.
type dashboard struct {
	m           *supervisor.Manager
	pool        *supervisor.Pool
	q           Queue // reads
	wq          Queue // actions
	token       string
	publicReads bool
	hosts       *hostPolicy
	limits      *loginLimits
	secure      bool // served over TLS: cookies are Secure
	sessions    *sessions
	samples     *sampler
	// snaps is the snapshot of the fleet and the queue that pages and
	// scrapes share.
	snaps *snapshots
	// metricsLog is where /metrics reports what it could not encode.
	metricsLog promhttp.Logger
	tmpl       *template.Template
	// restartTimeout is how long a restart waits for the API port.
	restartTimeout time.Duration
}

// dashboardOptions are serve's settings of the dashboard.
type dashboardOptions struct {
	token       string   // the bearer token; empty disables actions
	publicReads bool     // reads need no token (--public-reads)
	listen      string   // the listen address, the first name of the server
	allowHosts  []string // more names of the server (--allow-host)
	tls         bool     // served over TLS
	// snapshotAge is how long a snapshot of the fleet and the queue is
	// served (--snapshot-age); zero: each reader takes one, shared
	// only with the readers that come while it is being taken.
	snapshotAge time.Duration
}

func newDashboard(m *supervisor.Manager, pool *supervisor.Pool, q, wq Queue, o dashboardOptions) (*dashboard, error) {
	hosts, err := newHostPolicy(o.listen, o.allowHosts)
	if err != nil {
		return nil, err
	}
	t, err := template.New("").Funcs(template.FuncMap{
		"bytes":    humanBytes,
		"duration": func(s int64) string { return (time.Duration(s) * time.Second).String() },
		"plot":     plotSVG,
	}).ParseFS(webFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	sample := func(ctx context.Context) (*supervisor.Sample, error) { return m.Sample(ctx) }
	return &dashboard{m: m, pool: pool, q: q, wq: wq, token: o.token, publicReads: o.publicReads, hosts: hosts, limits: newLoginLimits(),
		secure: o.tls, sessions: newSessions(), snaps: newSnapshots(sample, q, o.snapshotAge, 10*time.Second),
		samples: newSampler(time.Hour, 15*time.Second), tmpl: t, restartTimeout: 90 * time.Second}, nil
}

// routes adds the dashboard's handlers to mux.
func (d *dashboard) routes(mux *http.ServeMux) {
	static, _ := fs.Sub(webFiles, "templates/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", d.index)
	metrics := metricsHandler(d.snaps, supervisor.Hostname(), d.metricsLog)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if d.authorizeRead(w, r) {
			metrics.ServeHTTP(w, r)
		}
	})
	mux.HandleFunc("GET /instances/{id}", d.instance)
	mux.HandleFunc("GET /documents", d.documents)
	mux.HandleFunc("GET /documents/{id}", d.document)
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.logout)
	mux.HandleFunc("POST /actions/{action}", d.action)
}

// pageData is what every page template gets.
type pageData struct {
	Title    string
	LoggedIn bool
	CSRF     string
	Actions  bool // a token is configured
	Error    string
	Notice   string
	Now      time.Time
	Fleet    *supervisor.Sample
	Workers  []workerRow
	// LocalWorkers is how many of Workers are this host's, what scaling
	// changes.
	LocalWorkers int
	Service      *kgdb.ServiceStatus
	Counts       queue.Counts
	Status       string
	Items        []queue.Item
	Statuses     []string
	// ClearStatuses are those the Clear form offers (failed preselected).
	ClearStatuses []string
	Depth         plotData
	Rate          plotData
	Instance      *supervisor.InstanceSample
	Journal       []string
	Search        string
	Documents     []kgdb.DocumentSummary
	Document      *kgdb.DocumentDetail
	Confirm       *confirmData
	Start         *startForm
}

// workerRow is a worker of the table: one of this host's units, or a
// worker of another host sharing the queue, known by its report (Local
// false; Up while it reports).
type workerRow struct {
	supervisor.WorkerSample
	Host  string
	Local bool
	Stats kgdb.WorkerStats
}

type confirmData struct {
	Action, Question string
	Fields           map[string]string
}

func (d *dashboard) base(r *http.Request, title string) pageData {
	p := pageData{Title: title, Actions: d.token != "", Now: time.Now()}
	if st := d.authOf(r); st.session {
		p.LoggedIn, p.CSRF = true, st.csrf
		f := d.sessions.takeFlash(st.sessionID)
		p.Notice, p.Error = f.notice, f.error
	}
	return p
}

func (d *dashboard) render(w http.ResponseWriter, r *http.Request, name string, p pageData) {
	d.renderStatus(w, r, http.StatusOK, name, p)
}

// renderStatus sends a page with its security headers and status code.
func (d *dashboard) renderStatus(w http.ResponseWriter, r *http.Request, code int, name string, p pageData) {
	d.pageHeaders(w)
	w.WriteHeader(code)
	if err := d.tmpl.ExecuteTemplate(w, name+".html", p); err != nil {
		fmt.Fprintf(w, "<p>template error: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

// renderBytes renders a page into memory.
func (d *dashboard) renderBytes(name string, p pageData) []byte {
	var b bytes.Buffer
	if err := d.tmpl.ExecuteTemplate(&b, name+".html", p); err != nil {
		fmt.Fprintf(&b, "<p>template error: %s</p>", template.HTMLEscapeString(err.Error()))
	}
	return b.Bytes()
}

// pageHeaders sets a page's type and security headers.
func (d *dashboard) pageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
}

func (d *dashboard) index(w http.ResponseWriter, r *http.Request) {
	if !d.authorizeRead(w, r) {
		return
	}
	p := d.base(r, "kato-manager")
	var errs []string
	for _, st := range queue.Statuses() {
		p.Statuses = append(p.Statuses, string(st))
	}
	for _, st := range kgdb.ClearableStatuses() {
		p.ClearStatuses = append(p.ClearStatuses, string(st))
	}
	p.Status = cmp.Or(r.URL.Query().Get("status"), string(defaultPageStatus))
	st, err := queue.ParseStatus(p.Status)
	if err != nil {
		errs = append(errs, err.Error())
		st = defaultPageStatus
	}
	snap, err := d.snaps.get(r.Context(), st)
	if err != nil {
		return // the client is gone
	}
	p.Fleet = snap.Fleet
	if snap.FleetErr != nil {
		errs = append(errs, "systemd: "+snap.FleetErr.Error())
	}
	if snap.QueueErr != nil {
		errs = append(errs, "queue: "+snap.QueueErr.Error())
	}
	p.Counts = snap.Queue.Counts
	if p.Fleet != nil {
		p.Workers, p.Service = workerRows(p.Fleet.Workers, snap.Queue.Reports, supervisor.Hostname(), time.Now())
		for _, w := range p.Workers {
			if w.Local {
				p.LocalWorkers++
			}
		}
	}
	if st == defaultPageStatus && p.Status != string(st) {
		p.Items = nil // the status asked for is not one
	} else {
		p.Items = snap.Queue.Items
	}
	p.Depth, p.Rate = d.samples.plots()
	if d.m != nil && d.m.Config != nil {
		p.Start = newStartForm(d.m.Config)
	}
	if len(errs) > 0 && p.Error == "" {
		p.Error = strings.Join(errs, "; ")
	}
	if !p.LoggedIn && p.Status == string(st) {
		// A reader without a session sees what every other one does:
		// the page is rendered once per snapshot.
		body, _ := snap.render("index "+p.Status, func() ([]byte, error) { return d.renderBytes("index", p), nil })
		d.pageHeaders(w)
		w.Write(body) //nolint:errcheck // the client may be gone
		return
	}
	d.render(w, r, "index", p)
}

// workerRows joins this host's worker units with their reports, as
// /metrics does, and lists the other hosts' workers after them.
func workerRows(workers []supervisor.WorkerSample, reports []kgdb.Report, host string, now time.Time) ([]workerRow, *kgdb.ServiceStatus) {
	byWorker, remote := kgpool.HostReports(reports, host)
	var rows []workerRow
	var service *kgdb.ServiceStatus
	for _, w := range workers {
		if w.ActiveState == "inactive" {
			continue
		}
		row := workerRow{WorkerSample: w, Host: host, Local: true}
		if r, ok := byWorker[w.WorkerID]; ok && w.Up && uint32(r.PID) == w.PID {
			row.Stats = r.Stats
			if service == nil {
				s := r.Service
				s.URL = config.RedactURL(s.URL)
				service = &s
			}
		}
		rows = append(rows, row)
	}
	for _, w := range kgpool.RemoteWorkers(remote, now) {
		state := "reporting"
		if !w.Running {
			state = "silent"
		}
		rows = append(rows, workerRow{WorkerSample: supervisor.WorkerSample{WorkerID: w.WorkerID, Unit: w.Unit(),
			ActiveState: "remote", SubState: state, Up: w.Running, PID: uint32(w.PID)}, Host: w.Host, Stats: w.Stats})
	}
	return rows, service
}

func (d *dashboard) instance(w http.ResponseWriter, r *http.Request) {
	if !d.authorizeRead(w, r) {
		return
	}
	id := r.PathValue("id")
	p := d.base(r, "instance "+id)
	snap, err := d.snaps.get(r.Context(), defaultPageStatus)
	if err != nil {
		return // the client is gone
	}
	fleet := snap.Fleet
	if snap.FleetErr != nil {
		http.Error(w, snap.FleetErr.Error(), http.StatusInternalServerError)
		return
	}
	for i := range fleet.Instances {
		if fleet.Instances[i].ID == id {
			p.Instance = &fleet.Instances[i]
		}
	}
	if p.Instance == nil {
		http.Error(w, "no instance "+id, http.StatusNotFound)
		return
	}
	if d.m.Journal != nil {
		p.Journal, err = d.m.Journal.Tail(r.Context(), p.Instance.Unit, 50)
		if err != nil {
			p.Error = "journal: " + err.Error()
		}
	}
	d.render(w, r, "instance", p)
}

func (d *dashboard) documents(w http.ResponseWriter, r *http.Request) {
	if !d.authorizeRead(w, r) {
		return
	}
	p := d.base(r, "documents")
	p.Search = r.URL.Query().Get("q")
	var err error
	if p.Documents, err = d.q.Documents(r.Context(), p.Search, 100); err != nil {
		p.Error = err.Error()
	}
	d.render(w, r, "documents", p)
}

func (d *dashboard) document(w http.ResponseWriter, r *http.Request) {
	if !d.authorizeRead(w, r) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		http.Error(w, "invalid document id", http.StatusBadRequest)
		return
	}
	p := d.base(r, "document "+r.PathValue("id"))
	if p.Document, err = d.q.Document(r.Context(), id); err != nil {
		http.Error(w, err.Error(), config.ErrorKindOf(err).HTTPStatus())
		return
	}
	d.render(w, r, "document", p)
}

func (d *dashboard) login(w http.ResponseWriter, r *http.Request) {
	if d.token == "" {
		http.Error(w, "serve has no token (see --token-file): there is nothing to log in with", http.StatusForbidden)
		return
	}
	ok, wait := d.limits.attempt(r.RemoteAddr, func() bool { return checkToken(d.token, r.PostFormValue("token")) })
	if wait > 0 {
		tooManyAttempts(w, wait)
		return
	}
	if !ok {
		p := d.base(r, "Log in")
		p.Error = "wrong token"
		d.renderStatus(w, r, http.StatusUnauthorized, "login", p)
		return
	}
	id, _ := d.sessions.create()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: d.secure, SameSite: http.SameSiteStrictMode, MaxAge: int(d.sessions.ttl.Seconds())})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (d *dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if id, sess, ok := d.sessions.lookup(r); ok && r.PostFormValue("csrf") == sess.csrf {
		d.sessions.remove(id)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: d.secure, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// destructive are the actions that ask first: without JavaScript the
// server shows a confirmation page, with it the browser asks.
var destructive = map[string]string{
	"stop":    "Stop instance %s and remove it from the registry?",
	"restart": "Restart instance %s?",
	"delete":  "Delete queue item %s?",
	"clear":   "Delete every %s item of the queue?",
	"scale":   "Scale the KG worker pool to %s worker(s)?",
	// requeue-all names nothing: the question has no %s.
	"requeue-all": "Queue every completed, failed and skipped document again?",
}

// action runs one of the CLI's actions: POST only, authorized, confirmed
// when destructive, bad input answered 400 with the field, value and rule.
func (d *dashboard) action(w http.ResponseWriter, r *http.Request) {
	if !d.authorizeAction(w, r) {
		return
	}
	name := r.PathValue("action")
	ctx := r.Context()
	form := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	if q := destructive[name]; q != "" && form("confirm") != "yes" {
		arg := form("id") + form("item") + form("content_id") + form("status") + form("workers")
		fields := map[string]string{}
		for k, v := range r.PostForm {
			if k != "csrf" && len(v) > 0 {
				fields[k] = v[0]
			}
		}
		p := d.base(r, "confirm")
		if name == "clear" && form("older_than") != "" {
			q = "Delete every %s item of the queue older than " + form("older_than") + "?"
		}
		if strings.Contains(q, "%s") {
			q = fmt.Sprintf(q, arg)
		}
		p.Confirm = &confirmData{Action: name, Question: q, Fields: fields}
		d.render(w, r, "confirm", p)
		return
	}
	var msg string
	var err error
	switch name {
	case "restart":
		var inst *config.Instance
		if inst, err = d.m.Restart(ctx, form("id"), d.restartTimeout); err == nil {
			msg = "restarted " + inst.ID
		}
	case "stop":
		var res *supervisor.StopResult
		if res, err = d.m.Stop(ctx, form("id")); err == nil {
			msg = "stopped " + strings.Join(res.Stopped, ", ")
		}
	case "scale":
		var n int
		if n, err = strconv.Atoi(form("workers")); err != nil {
			err = &config.FieldError{Field: "workers", Value: form("workers"), Rule: "must be a whole number"}
		} else if err = supervisor.ValidateWorkerCount(n); err == nil {
			var started, stopped []string
			if started, stopped, err = d.pool.Scale(ctx, n); err == nil {
				msg = fmt.Sprintf("%d worker(s): started %d, stopped %d", n, len(started), len(stopped))
			}
		}
	case "start":
		if err = r.ParseForm(); err == nil {
			msg, err = d.start(ctx, r.PostForm)
		}
	case "requeue-all":
		var priority int
		if priority, err = kgdb.ParsePriority("priority", cmp.Or(form("priority"), "1")); err == nil {
			var n int
			if n, err = d.wq.RequeueAll(ctx, priority); err == nil {
				msg = fmt.Sprintf("%d document(s) queued again", n)
			}
		}
	case "retry":
		var n int
		if n, err = d.wq.RetryFailed(ctx); err == nil {
			msg = fmt.Sprintf("%d failed item(s) queued again", n)
		}
	case "requeue", "priority", "delete":
		msg, err = d.itemAction(ctx, name, form)
	case "clear":
		st, perr := kgdb.ParseClearStatus("status", form("status"))
		if perr != nil {
			err = perr
			break
		}
		var n int
		if older := form("older_than"); older != "" {
			// queue clear --status S --older-than AGE
			var age time.Duration
			if age, err = kgdb.ParseAge("older_than", older); err != nil {
				break
			}
			if n, err = d.wq.ClearOlderThan(ctx, st, age); err == nil {
				msg = fmt.Sprintf("%d %s item(s) older than %s deleted", n, st, older)
			}
		} else if n, err = d.wq.Clear(ctx, st); err == nil {
			msg = fmt.Sprintf("%d %s item(s) deleted", n, st)
		}
	default:
		http.Error(w, "unknown action "+name, http.StatusNotFound)
		return
	}
	// Whatever it did, the next page and scrape read the fleet and the
	// queue again.
	d.snaps.forget()
	// A browser's session is sent back to the dashboard, with the outcome
	// kept for that page; a script is answered in plain text.
	st := d.authOf(r)
	toPage := st.session && !st.bearer && strings.Contains(r.Header.Get("Accept"), "text/html")
	if err != nil {
		code := config.ErrorKindOf(err).HTTPStatus()
		if !toPage {
			http.Error(w, err.Error(), code)
			return
		}
		d.sessions.setFlash(st.sessionID, flash{error: err.Error()})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !toPage {
		fmt.Fprintln(w, msg)
		return
	}
	d.sessions.setFlash(st.sessionID, flash{notice: msg})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// itemAction runs the queue actions that take an item or a document.
func (d *dashboard) itemAction(ctx context.Context, name string, form func(string) string) (string, error) {
	field, value := "item", form("item")
	if name == "requeue" {
		field, value = "content_id", form("content_id")
	}
	ids, err := kgdb.ParseIDs(field, []string{value})
	if err != nil {
		return "", err
	}
	switch name {
	case "requeue":
		n, err := d.wq.Requeue(ctx, 1, ids...)
		return fmt.Sprintf("%d document(s) queued again", n), err
	case "priority":
		p, err := kgdb.ParsePriority("priority", form("priority"))
		if err != nil {
			return "", err
		}
		n, err := d.wq.SetPriority(ctx, p, ids...)
		return fmt.Sprintf("%d item(s) now at priority %d", n, p), err
	default:
		n, err := d.wq.Delete(ctx, ids...)
		return fmt.Sprintf("%d item(s) deleted", n), err
	}
}

// startForm is what the dashboard's form to start an instance offers: the
// processors of kato.toml and every processor parameter, with the
// defaults a field left empty takes.
type startForm struct {
	Processors []string
	Params     []paramField
}

// paramField is one processor parameter in the form: its input is named
// after the flag of `start`, as the form takes start's flags.
type paramField struct {
	Flag, Label, Input, Default, Step string
}

func newStartForm(cfg *config.Config) *startForm {
	f := &startForm{Processors: []string{config.DefaultProcessor}}
	for name := range cfg.Processors {
		f.Processors = append(f.Processors, name)
	}
	slices.Sort(f.Processors[1:])
	for _, row := range config.Params {
		pf := paramField{Flag: row.Flag, Label: row.Usage, Input: "text", Default: config.FormatValue(cfg.Defaults[row.Name])}
		switch row.Kind {
		case config.Int:
			pf.Input, pf.Step = "number", "1"
		case config.Float:
			pf.Input, pf.Step = "number", "any"
		case config.Bool:
			pf.Input = "checkbox"
		}
		f.Params = append(f.Params, pf)
	}
	return f
}

// start starts an instance from the form as `kato-manager start` does:
// each field filled in is the flag of its name, a checkbox ticked its
// switch, a field left empty the default; its rules and layering are
// supervisor.StartInput's, as for start's flags. Not
// --processor-command: the dashboard runs the processors kato.toml names,
// never a command it is sent. Bad input is refused, naming the field,
// before anything is changed.
func (d *dashboard) start(ctx context.Context, form url.Values) (string, error) {
	in := supervisor.StartInput{Parameters: config.Parameters{}, Given: map[string]bool{}}
	for _, key := range slices.Sorted(maps.Keys(form)) {
		value := strings.TrimSpace(form.Get(key))
		if key == "csrf" || key == "confirm" || value == "" {
			continue
		}
		in.Given[key] = true
		switch key {
		case "id":
			in.ID = value
		case "name":
			in.Name = value
		case "processor":
			in.Processor = value
		case "network":
			in.Network = value
		case "port", "zmq-port":
			n, err := strconv.ParseInt(value, 0, 0)
			if err != nil {
				return "", &config.FieldError{Field: "--" + key, Value: value, Rule: "must be a whole number"}
			}
			if key == "port" {
				in.APIPort = int(n)
			} else {
				in.ZMQPort = int(n)
			}
		default:
			row, ok := config.ParamFlagNamed(key)
			if !ok {
				return "", &config.FieldError{Field: key, Value: value, Rule: "is not a setting of start"}
			}
			v, err := config.ParseParam(row, "--"+key, value)
			if err != nil {
				return "", err
			}
			in.Parameters[row.Name] = v
		}
	}
	// A value given is taken as given, never as the default, as on start's
	// command line.
	if err := in.Check(); err != nil {
		return "", err
	}
	// What was typed, in the order start lists its flags.
	for _, row := range config.Params {
		if in.Given[row.Flag] {
			in.Explicit = append(in.Explicit, "--"+row.Flag)
		}
	}
	for _, key := range []string{"name", "port", "zmq-port", "processor", "network"} {
		if in.Given[key] {
			in.Explicit = append(in.Explicit, "--"+key)
		}
	}
	req, err := in.Request(d.m.Config)
	if err != nil {
		return "", err
	}
	res, err := d.m.Start(ctx, req)
	if err != nil {
		return "", err
	}
	inst := res.Instance
	msg := fmt.Sprintf("started %s (%s): %s, API port %d%s", inst.ID, inst.Name, inst.Unit, inst.APIPort, zmqText(inst.ZMQPort))
	if res.AlreadyRunning {
		msg = fmt.Sprintf("instance %s (%s) is already running: %s, API port %d", inst.ID, inst.Name, inst.Unit, inst.APIPort)
	}
	if len(res.Notices) > 0 {
		msg += "; " + strings.Join(res.Notices, "; ")
	}
	return msg, nil
}

// zmqText is ", ZMQ port N" for an instance with a ZMQ port, "" for one
// without (generation B).
func zmqText(port int) string {
	if port == 0 {
		return ""
	}
	return fmt.Sprintf(", ZMQ port %d", port)
}

func humanBytes(n uint64) string {
	switch {
	case n == 0:
		return "-"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
}

// sampler keeps the queue's counts over the last window, one sample per
// step, for the dashboard's plots.
type sampler struct {
	mu      sync.Mutex
	window  time.Duration
	step    time.Duration
	samples []queueSample
}

type queueSample struct {
	at     time.Time
	counts queue.Counts
}

func newSampler(window, step time.Duration) *sampler { return &sampler{window: window, step: step} }

func (s *sampler) add(at time.Time, c queue.Counts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, queueSample{at: at, counts: c})
	for len(s.samples) > 0 && at.Sub(s.samples[0].at) > s.window {
		s.samples = s.samples[1:]
	}
}

// run samples the queue every step until ctx ends.
func (s *sampler) run(ctx context.Context, q Queue) {
	t := time.NewTicker(s.step)
	defer t.Stop()
	for {
		if c, err := q.Stats(ctx); err == nil {
			s.add(time.Now(), c)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// plotData is one series ready for plotSVG.
type plotData struct {
	Title  string
	Unit   string
	Points []plotPoint
	Max    float64
	Last   float64
	Window time.Duration // the span of the x axis, ending now
}

type plotPoint struct {
	Age   time.Duration // before now
	Value float64
}

// plots returns the queue depth (pending + processing) and the
// throughput (items completed, failed or skipped per minute) over the
// window.
func (s *sampler) plots() (depth, rate plotData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	depth = plotData{Title: "Queue depth (pending + processing)", Unit: "items", Window: s.window}
	rate = plotData{Title: "Throughput (finished per minute)", Unit: "items/min", Window: s.window}
	for i, smp := range s.samples {
		v := float64(smp.counts.Pending + smp.counts.Processing)
		depth.Points = append(depth.Points, plotPoint{Age: now.Sub(smp.at), Value: v})
		if i > 0 {
			prev := s.samples[i-1]
			done := func(c queue.Counts) int { return c.Completed + c.Failed + c.Skipped }
			dt := smp.at.Sub(prev.at).Minutes()
			r := 0.0
			if d := done(smp.counts) - done(prev.counts); dt > 0 && d > 0 {
				r = float64(d) / dt
			}
			rate.Points = append(rate.Points, plotPoint{Age: now.Sub(smp.at), Value: r})
		}
	}
	// The x axis covers the samples there are, at least a minute, at most
	// the window.
	span := time.Minute
	if len(s.samples) > 0 {
		span = min(max(span, now.Sub(s.samples[0].at).Round(time.Second)), s.window)
	}
	for _, p := range []*plotData{&depth, &rate} {
		p.Window = span
		for _, pt := range p.Points {
			p.Max = max(p.Max, pt.Value)
		}
		if n := len(p.Points); n > 0 {
			p.Last = p.Points[n-1].Value
		}
	}
	return depth, rate
}

// plotSVG draws a series as an inline SVG line chart: time on x (the
// window, now at the right), the value on y from zero to the maximum.
func plotSVG(p plotData) template.HTML {
	const w, h, pad = 600.0, 160.0, 30.0
	var b strings.Builder
	top := p.Max
	if top <= 0 {
		top = 1
	}
	fmt.Fprintf(&b, `<svg class="plot" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, w, h, template.HTMLEscapeString(p.Title))
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f"/>`, pad, h-pad, w-5, h-pad)
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="5" x2="%.0f" y2="%.0f"/>`, pad, pad, h-pad)
	label := strconv.FormatFloat(top, 'f', 0, 64)
	if top < 10 && top != float64(int(top)) {
		label = strconv.FormatFloat(top, 'f', 1, 64)
	}
	fmt.Fprintf(&b, `<text x="2" y="14">%s</text><text x="2" y="%.0f">0</text>`, label, h-pad)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">-%s</text><text x="%.0f" y="%.0f" text-anchor="end">now</text>`, pad, h-10, p.Window, w-5, h-10)
	if len(p.Points) > 0 {
		var pts []string
		for _, pt := range p.Points {
			x := pad + (w-5-pad)*(1-float64(pt.Age)/float64(p.Window))
			y := (h - pad) - (h-pad-5)*pt.Value/top
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", max(x, pad), y))
		}
		fmt.Fprintf(&b, `<polyline class="line" points="%s"/>`, strings.Join(pts, " "))
		// The latest sample is marked, so that a single one shows too.
		x, y, _ := strings.Cut(pts[len(pts)-1], ",")
		fmt.Fprintf(&b, `<circle class="dot" cx="%s" cy="%s" r="3"/>`, x, y)
	} else {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">no samples yet</text>`, w/2, h/2)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from numbers and an escaped title
}
