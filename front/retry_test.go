package front

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFrontRetriesOnlySafeRequests runs HAProxy before a member that
// passes its ready check but closes the connection under every other
// request without an answer (as a member killed mid-request does) and a
// processor double: a GET is sent again to the other member, and answered;
// a POST, which the dead member may have acted on, is not, and fails.
func TestFrontRetriesOnlySafeRequests(t *testing.T) {
	needHAProxy(t)
	good := startProcessor(t, "good")
	closer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			io.WriteString(w, `{"status": "healthy"}`)
			return
		}
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer closer.Close()
	port, _ := strconv.Atoi(strings.TrimPrefix(closer.URL, "http://127.0.0.1:"))
	g := group(RoundRobin, Member{ID: "dies", Address: "127.0.0.1", Port: port}, good.member(0))
	g.Port = freePort(t)
	h := startFront(t, g)
	waitStates(t, h.client(), allUp(g))
	base := "http://127.0.0.1:" + strconv.Itoa(g.Port)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	gets, posts := 0, 0
	for range 10 {
		resp, err := client.Get(base + "/status")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Fake-Engine") != "good" {
			gets++
		}
	}
	for range 10 {
		resp, err := client.Post(base+"/observe", "application/json", strings.NewReader(`{"strings": ["a"], "vectors": [], "emotives": {}}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway {
			posts++
		}
	}
	if gets != 0 {
		t.Errorf("%d of 10 GETs failed: a GET sent to a member that closed without answering is not retried on another", gets)
	}
	if posts == 0 {
		t.Errorf("no POST of 10 reached the member that closes without answering: a POST is retried, which may run it twice")
	}
}
