package kgservicefake_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
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

// markdown is a document body within the service's 50-character minimum.
const markdown = "# A\n\nKnowledge graphs link Zürich-based entities with relationships."

func request(id int64) string {
	return `{"content_id":` + strconv.FormatInt(id, 10) + `,"url":"https://example.org/a","title":"A","markdown":"` +
		strings.ReplaceAll(markdown, "\n", `\n`) + `",
"chunks":[{"vector_rowid":4200,"chunk_index":0,"char_start":0,"char_end":19,"text":"Knowledge graphs link"},
{"vector_rowid":4201,"chunk_index":1,"char_start":19,"char_end":80,"text":"Zürich-based entities with relationships across many chunks of text"}],
"metadata":{"lang":"en"}}`
}

var sampleRequest = request(42)

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
	if a := resp.Entities[0].ChunkAppearances[0]; !utf8.ValidString(ctx) || len(ctx) != 39 || a.OffsetEnd != 20 {
		t.Errorf("context %q (%d bytes), offset_end %d; want the 39 bytes (20 characters) before the cut character", ctx, len(ctx), a.OffsetEnd)
	}
}

func TestHealthFollowsOutage(t *testing.T) {
	fake, srv := serve(t)
	for _, tc := range []struct {
		name             string
		control          kgservicefake.Control
		wantStatus, want string
	}{
		{"up", kgservicefake.Control{}, "healthy", "connected"},
		{"down", kgservicefake.Control{Outage: true}, "unhealthy", "disconnected"},
		{"degraded", kgservicefake.Control{Degraded: true}, "degraded", "connected"},
		{"up again", kgservicefake.Control{}, "healthy", "connected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetControl(tc.control)
			code, body := call(t, http.MethodGet, srv.URL+"/health", "")
			var h struct {
				Status    string            `json:"status"`
				Timestamp string            `json:"timestamp"`
				Services  map[string]string `json:"services"`
				Version   string            `json:"version"`
				Uptime    *float64          `json:"uptime_seconds"`
			}
			if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 {
				t.Fatalf("GET /health = %d %s: %v", code, body, err)
			}
			if h.Status != tc.wantStatus || h.Timestamp == "" || h.Version == "" || h.Uptime == nil ||
				h.Services["neo4j"] != tc.want || h.Services["vllm"] != tc.want || h.Services["gliner"] != tc.want {
				t.Errorf("GET /health = %s, want status %s and services %s", body, tc.wantStatus, tc.want)
			}
		})
	}
}

// TestIngestRejectsWhatTheServiceRejects sends one request per limit of the
// contract, just outside it, and expects 422.
func TestIngestRejectsWhatTheServiceRejects(t *testing.T) {
	chunk := func(rowid, index, start, end int, text string) string {
		return fmt.Sprintf(`{"vector_rowid":%d,"chunk_index":%d,"char_start":%d,"char_end":%d,"text":%q}`, rowid, index, start, end, text)
	}
	good := chunk(1, 0, 0, 20, "ten or more characters")
	body := func(id, url, title, md string, chunks ...string) string {
		return fmt.Sprintf(`{"content_id":%s,"url":%q,"title":%q,"markdown":%q,"chunks":[%s]}`, id, url, title, md, strings.Join(chunks, ","))
	}
	md := strings.Repeat("m", 50)
	many := make([]string, 1001)
	for i := range many {
		many[i] = chunk(i+1, i, 0, 20, "ten or more characters")
	}
	for _, tc := range []struct{ name, body, field string }{
		{"content_id 0", body("0", "https://a.example", "t", md, good), "content_id"},
		{"content_id negative", body("-3", "https://a.example", "t", md, good), "content_id"},
		{"url too long", body("1", "https://a.example/"+strings.Repeat("p", 2040), "t", md, good), "url"},
		{"url not http", body("1", "ftp://a.example", "t", md, good), "url"},
		{"title too long", body("1", "https://a.example", strings.Repeat("t", 501), md, good), "title"},
		{"markdown too short", body("1", "https://a.example", "t", strings.Repeat("m", 49), good), "markdown"},
		{"no chunks", body("1", "https://a.example", "t", md), "chunks"},
		{"1001 chunks", body("1", "https://a.example", "t", md, many...), "chunks"},
		{"vector_rowid 0", body("1", "https://a.example", "t", md, chunk(0, 0, 0, 20, "ten or more characters")), "vector_rowid"},
		{"chunk_index negative", body("1", "https://a.example", "t", md, chunk(1, -1, 0, 20, "ten or more characters")), "chunk_index"},
		{"chunk_index not increasing", body("1", "https://a.example", "t", md, good, chunk(2, 0, 20, 40, "ten or more characters")), "chunk_index"},
		{"char_start negative", body("1", "https://a.example", "t", md, chunk(1, 0, -1, 20, "ten or more characters")), "char_start"},
		{"char_end not after start", body("1", "https://a.example", "t", md, chunk(1, 0, 20, 20, "ten or more characters")), "char_end"},
		{"chunk text too short", body("1", "https://a.example", "t", md, chunk(1, 0, 0, 20, "nine char")), "text"},
		{"chunk text too long", body("1", "https://a.example", "t", md, chunk(1, 0, 0, 20, strings.Repeat("x", 10001))), "text"},
		{"metadata not an object", `{"content_id":1,"url":"https://a.example","title":"t","markdown":"` + md + `","chunks":[` + good + `],"metadata":[1]}`, "metadata"},
		{"content_id a string", `{"content_id":"1"}`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, srv := serve(t)
			code, out := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", tc.body)
			if code != http.StatusUnprocessableEntity || !strings.Contains(out, `"`+tc.field+`"`) {
				t.Errorf("ingest = %d %s, want 422 naming %s", code, out, tc.field)
			}
			if len(fake.Received()) != 0 {
				t.Errorf("a rejected request was counted as received: %v", fake.Received())
			}
		})
	}
	// The limits themselves pass.
	fake, srv := serve(t)
	if code, out := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", body("1", "https://a.example/"+strings.Repeat("p", 2048-18), strings.Repeat("t", 500), md, many[:1000]...)); code != 200 {
		t.Errorf("a request at every limit = %d %.300s", code, out)
	}
	if fake.Ingested()[1] != 1 {
		t.Errorf("ingested = %v", fake.Ingested())
	}
}

func TestIngestFaults(t *testing.T) {
	for _, tc := range []struct {
		fault    string
		wantCode int // 0: no answer at all
		want     string
	}{
		{kgservicefake.FaultError, 500, `"error_type":"ExtractionError"`},
		{kgservicefake.FaultDrop, 0, ""},
		{kgservicefake.FaultThrottle, 429, `"success":false`},
		{kgservicefake.FaultUnavailable, 503, `"success":false`},
		{kgservicefake.FaultWrongContentID, 200, `"content_id":43`},
		{kgservicefake.FaultCountMismatch, 200, `"entities_extracted":4`},
		{kgservicefake.FaultSuccessOnly, 200, `{"success":true}`},
		{kgservicefake.FaultWrongTypes, 200, `"content_id":"42"`},
		{kgservicefake.FaultUnknownChunk, 200, `"vector_rowid":-1`},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			fake, srv := serve(t)
			fake.SetControl(kgservicefake.Control{Faults: map[int64]string{42: tc.fault}, RetryAfterS: 7})
			resp, err := http.Post(srv.URL+"/api/v1/ingest", "application/json", strings.NewReader(sampleRequest))
			if tc.wantCode == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("a dropped request was answered %s", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode || !strings.Contains(string(out), tc.want) {
				t.Errorf("ingest = %d %s, want %d containing %s", resp.StatusCode, out, tc.wantCode, tc.want)
			}
			if tc.wantCode == 429 || tc.wantCode == 503 {
				if ra := resp.Header.Get("Retry-After"); ra != "7" {
					t.Errorf("Retry-After = %q, want 7", ra)
				}
			}
			if fake.Received()[42] != 1 || fake.Ingested()[42] != 0 {
				t.Errorf("received %v ingested %v; want the request received once and not counted as ingested", fake.Received(), fake.Ingested())
			}
		})
	}
	t.Run("missing_fields", func(t *testing.T) {
		fake, srv := serve(t)
		fake.SetControl(kgservicefake.Control{Faults: map[int64]string{42: kgservicefake.FaultMissingFields}})
		_, out := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", sampleRequest)
		if strings.Contains(out, "neo4j_document_id") || strings.Contains(out, "summary") || !strings.Contains(out, "entities") {
			t.Errorf("missing_fields answer %s", out)
		}
	})
}

func TestIngestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name         string
		control      kgservicefake.Control
		wantCode     int
		wantInBody   string
		wantIngested int
	}{
		{"success", kgservicefake.Control{}, 200, `"success":true`, 1},
		{"chosen failure", kgservicefake.Control{FailIDs: []int64{42}}, 500,
			`"error":"extraction failed for content_id 42","error_type":"ExtractionError"`, 0},
		{"other id fails", kgservicefake.Control{FailIDs: []int64{41}}, 200, `"success":true`, 1},
		{"outage", kgservicefake.Control{Outage: true}, 503, `"error_type":"ServiceUnavailable"`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, srv := serve(t)
			fake.SetControl(tc.control)
			code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", sampleRequest)
			if code != tc.wantCode || !strings.Contains(body, tc.wantInBody) {
				t.Errorf("ingest = %d %s, want %d containing %s", code, body, tc.wantCode, tc.wantInBody)
			}
			if code != 200 && (!strings.Contains(body, `"success":false`) || !strings.Contains(body, `"timestamp"`)) {
				t.Errorf("error answer %s lacks success:false or timestamp", body)
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
		n, _ := strconv.ParseInt(id, 10, 64)
		if code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", request(n)); code != 200 {
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

// TestPaddedAnswers: answer_bytes pads an answer to about that size with
// entities of pad_chars-character sentences that keep it a whole success
// model (counts, summary, appearances in the request's chunks); error_text
// is the error fault's error; POST /control sets all three and refuses
// negative sizes.
func TestPaddedAnswers(t *testing.T) {
	fake, srv := serve(t)
	for _, tc := range []struct {
		name     string
		control  string
		size     int
		padChars int
	}{
		{"1 MiB of 1 KiB entities", `{"answer_bytes": 1048576}`, 1 << 20, 800},
		{"1 MiB of small entities", `{"answer_bytes": 1048576, "pad_chars": 100}`, 1 << 20, 100},
		{"4 MiB of large entities", `{"answer_bytes": 4194304, "pad_chars": 300000}`, 4 << 20, 300000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := call(t, http.MethodPost, srv.URL+"/control", tc.control); code != 200 {
				t.Fatalf("POST /control %s = %d %s", tc.control, code, body)
			}
			code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", sampleRequest)
			if code != 200 {
				t.Fatalf("ingest = %d %s", code, body)
			}
			if per := 2 * tc.padChars; len(body) > tc.size+1 || len(body) < tc.size-per-1024 {
				t.Errorf("answer of %d bytes, want about %d", len(body), tc.size)
			}
			var r kgservicefake.IngestResponse
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatal(err)
			}
			padding := 0
			for _, e := range r.Entities {
				if e.TypePrimary == "Padding" {
					padding++
					if len(e.Sentence) != tc.padChars || len(e.ChunkAppearances) != 1 || e.ChunkAppearances[0].VectorRowID != 4200 {
						t.Fatalf("padding entity %+v", e)
					}
				}
			}
			if padding == 0 || r.EntitiesExtracted != len(r.Entities) || r.Summary.EntitiesByType["Padding"] != padding {
				t.Errorf("%d padding entities, entities_extracted %d of %d, summary %v", padding, r.EntitiesExtracted, len(r.Entities), r.Summary.EntitiesByType)
			}
		})
	}

	page := "<html>\x1b[2J" + strings.Repeat("x", 1000) + "</html>"
	b, _ := json.Marshal(map[string]any{"error_text": page, "answer_bytes": 0, "faults": map[string]string{"42": "error"}})
	if code, body := call(t, http.MethodPost, srv.URL+"/control", string(b)); code != 200 {
		t.Fatalf("POST /control = %d %s", code, body)
	}
	code, body := call(t, http.MethodPost, srv.URL+"/api/v1/ingest", sampleRequest)
	var e kgservicefake.ErrorResponse
	if code != 500 || json.Unmarshal([]byte(body), &e) != nil || e.Error != page {
		t.Errorf("error fault with error_text = %d %.200s", code, body)
	}
	for _, bad := range []string{`{"answer_bytes": -1}`, `{"pad_chars": -1}`} {
		if code, _ := call(t, http.MethodPost, srv.URL+"/control", bad); code != 400 {
			t.Errorf("POST /control %s = %d, want 400", bad, code)
		}
	}
	if c := fake.Control(); c.ErrorText != page || c.AnswerBytes != 0 || c.PadChars != 300000 {
		t.Errorf("Control() = answer_bytes %d, pad_chars %d, error_text of %d bytes", c.AnswerBytes, c.PadChars, len(c.ErrorText))
	}
}
