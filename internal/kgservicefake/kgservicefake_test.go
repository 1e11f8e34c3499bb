package kgservicefake_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kato-manager/kato-manager/internal/kgservicefake"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func serve(t *testing.T) (*kgservicefake.Server, *httptest.Server) {
	t.Helper()
	fake := kgservicefake.New()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}

const sampleRequest = `{"content_id":42,"url":"https://example.org/a","title":"A","markdown":"# A",
"chunks":[{"vector_rowid":4200,"chunk_index":0,"char_start":0,"char_end":19,"text":"Knowledge graphs link"},
{"vector_rowid":4201,"chunk_index":1,"char_start":19,"char_end":80,"text":"Zürich-based entities with relationships across many chunks of text"}],
"metadata":{"lang":"en"}}`

func TestIngestGolden(t *testing.T) {
	_, srv := serve(t)
	code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", sampleRequest)
	if code != http.StatusOK {
		t.Fatalf("ingest answered %d: %s", code, body)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(body), "", "  "); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "ingest_response.golden")
	if *update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read %s (run with -update to create it): %v", golden, err)
	}
	if pretty.String() != string(want) {
		t.Errorf("ingest response differs from %s (run with -update if intended):\n%s", golden, pretty.String())
	}
}

func TestExtractCutsOnCharacterBoundaries(t *testing.T) {
	text := "a" + strings.Repeat("ü", 30) // byte 40 falls inside a "ü"
	resp := kgservicefake.Extract(kgservicefake.IngestRequest{ContentID: 1,
		Chunks: []kgservicefake.Chunk{{VectorRowID: 1, Text: text}}})
	ctx := resp.Relationships[0].Context
	if !utf8.ValidString(ctx) || len(ctx) != 39 || resp.Entities[0].OffsetEnd != 39 {
		t.Errorf("context %q (%d bytes), offset_end %d; want the 39 bytes before the cut character", ctx, len(ctx), resp.Entities[0].OffsetEnd)
	}
}

func TestHealthFollowsOutage(t *testing.T) {
	fake, srv := serve(t)
	for _, tc := range []struct {
		name     string
		outage   bool
		wantCode int
		wantBody string
	}{
		{"up", false, 200, `{"status":"healthy"}`},
		{"down", true, 503, `{"status":"unhealthy"}`},
		{"up again", false, 200, `{"status":"healthy"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetControl(kgservicefake.Control{Outage: tc.outage})
			code, body := call(t, http.MethodGet, srv.URL+"/health", "")
			if code != tc.wantCode || strings.TrimSpace(body) != tc.wantBody {
				t.Errorf("GET /health = %d %s, want %d %s", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestIngestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name         string
		control      kgservicefake.Control
		body         string
		wantCode     int
		wantInBody   string
		wantIngested int
	}{
		{"success", kgservicefake.Control{}, sampleRequest, 200, `"success":true`, 1},
		{"chosen failure", kgservicefake.Control{FailIDs: []int64{42}}, sampleRequest, 500,
			`"error":"extraction failed for content_id 42","error_type":"ExtractionError"`, 0},
		{"other id fails", kgservicefake.Control{FailIDs: []int64{41}}, sampleRequest, 200, `"success":true`, 1},
		{"outage", kgservicefake.Control{Outage: true}, sampleRequest, 503, `"error_type":"ServiceUnavailable"`, 0},
		{"body not JSON", kgservicefake.Control{}, `{`, 400, `"error_type":"ValidationError"`, 0},
		{"no content id", kgservicefake.Control{}, `{"chunks":[]}`, 422, `invalid content_id 0: must be positive`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, srv := serve(t)
			fake.SetControl(tc.control)
			code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", tc.body)
			if code != tc.wantCode || !strings.Contains(body, tc.wantInBody) {
				t.Errorf("ingest = %d %s, want %d containing %s", code, body, tc.wantCode, tc.wantInBody)
			}
			if code != 200 && !strings.Contains(body, `"success":false`) {
				t.Errorf("error answer %s lacks success:false", body)
			}
			if got := fake.Ingested()[42]; got != tc.wantIngested {
				t.Errorf("ingested count for 42 = %d, want %d", got, tc.wantIngested)
			}
		})
	}
}

func TestIngestLatency(t *testing.T) {
	fake, srv := serve(t)
	fake.SetControl(kgservicefake.Control{LatencyMS: 200})
	start := time.Now()
	code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", sampleRequest)
	if took := time.Since(start); code != 200 || took < 200*time.Millisecond {
		t.Errorf("ingest = %d after %s, want 200 after at least 200ms", code, took)
	}
	if !strings.Contains(body, `"processing_time_ms":200`) {
		t.Errorf("answer %s does not report the latency", body)
	}
}

func TestControlEndpoint(t *testing.T) {
	fake, srv := serve(t)
	steps := []struct {
		name     string
		body     string
		wantCode int
		want     kgservicefake.Control
	}{
		{"set all", `{"latency_ms":50,"outage":true,"fail_ids":[3,4]}`, 200,
			kgservicefake.Control{LatencyMS: 50, Outage: true, FailIDs: []int64{3, 4}}},
		{"toggle outage only", `{"outage":false}`, 200,
			kgservicefake.Control{LatencyMS: 50, FailIDs: []int64{3, 4}}},
		{"clear fail ids", `{"fail_ids":[]}`, 200,
			kgservicefake.Control{LatencyMS: 50, FailIDs: []int64{}}},
		{"negative latency", `{"latency_ms":-1}`, 400,
			kgservicefake.Control{LatencyMS: 50, FailIDs: []int64{}}},
		{"unknown field", `{"latency":5}`, 400,
			kgservicefake.Control{LatencyMS: 50, FailIDs: []int64{}}},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, http.MethodPost, srv.URL+"/control", tc.body)
			if code != tc.wantCode {
				t.Fatalf("POST /control %s = %d %s, want %d", tc.body, code, body, tc.wantCode)
			}
			_, got := call(t, http.MethodGet, srv.URL+"/control", "")
			var c kgservicefake.Control
			if err := json.Unmarshal([]byte(got), &c); err != nil {
				t.Fatal(err)
			}
			if c.LatencyMS != tc.want.LatencyMS || c.Outage != tc.want.Outage || len(c.FailIDs) != len(tc.want.FailIDs) {
				t.Errorf("GET /control = %s, want %+v", got, tc.want)
			}
			if fc := fake.Control(); fc.LatencyMS != tc.want.LatencyMS || fc.Outage != tc.want.Outage {
				t.Errorf("Control() = %+v, want %+v", fc, tc.want)
			}
		})
	}
}

func TestIngestedCounts(t *testing.T) {
	fake, srv := serve(t)
	for _, id := range []string{"1", "2", "2"} {
		if code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", `{"content_id":`+id+`,"chunks":[]}`); code != 200 {
			t.Fatalf("ingest %s = %d %s", id, code, body)
		}
	}
	_, body := call(t, http.MethodGet, srv.URL+"/ingested", "")
	if strings.TrimSpace(body) != `{"1":1,"2":2}` {
		t.Errorf("GET /ingested = %s, want {\"1\":1,\"2\":2}", body)
	}
	if got := fake.Ingested(); got[1] != 1 || got[2] != 2 || len(got) != 2 {
		t.Errorf("Ingested() = %v", got)
	}
	if req, ok := fake.LastRequest(2); !ok || req.ContentID != 2 {
		t.Errorf("LastRequest(2) = %+v, %v", req, ok)
	}
}
