package kgworker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/config"
	"github.com/kato-manager/kato-manager/kgworker"
)

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
		opts []kgworker.Option
		want string
	}{
		{"empty path", "", nil, `invalid db_path "": must not be empty`},
		{"negative retries", dir + "/a.db", []kgworker.Option{kgworker.WithMaxRetries(-1)}, "invalid max_retries -1: must be zero or more"},
		{"zero backoff", dir + "/b.db", []kgworker.Option{kgworker.WithBackoff(0, time.Second)}, "invalid backoff base 0s: must be positive"},
		{"max below base", dir + "/c.db", []kgworker.Option{kgworker.WithBackoff(time.Minute, time.Second)}, "invalid backoff max 1s: must be at least the base 1m0s"},
		{"missing directory", dir + "/missing/kg.db", nil, "open kg database " + dir + "/missing/kg.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := kgworker.Open(context.Background(), tc.path, tc.opts...)
			if err == nil {
				q.Close()
				t.Fatalf("Open succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEnqueueRejectsBadContentID(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := openQueue(t, be)
		for _, id := range []int64{0, -4} {
			_, err := q.Enqueue(context.Background(), id, 1)
			if err == nil || !strings.Contains(err.Error(), "must be positive") {
				t.Errorf("Enqueue(%d) error = %v, want invalid content_id", id, err)
			}
		}
		if st, _ := q.Stats(context.Background()); st.Total != 0 {
			t.Errorf("queue holds %d items after rejected enqueues, want 0", st.Total)
		}
	})
}

// TestEnqueueDocumentsRefusesUnknownDocuments: queueing a content id
// without a crawled_content row is refused at once, naming it, and the
// other ids of the call are not queued either.
func TestEnqueueDocumentsRefusesUnknownDocuments(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, path := openQueue(t, be)
		db := rawDB(t, path)
		addContent(t, db, 1, 1)
		addContent(t, db, 2, 1)
		ctx := context.Background()
		_, err := q.EnqueueDocuments(ctx, 1, 1, 99, 2)
		var ie *config.FieldError
		if !errors.As(err, &ie) || ie.Field != "CONTENT_ID" || ie.Value != "99" || !strings.Contains(ie.Rule, "no crawled_content row") {
			t.Fatalf("EnqueueDocuments(1, 99, 2) error = %v, want a *config.FieldError naming CONTENT_ID 99", err)
		}
		if st, _ := q.Stats(ctx); st.Total != 0 {
			t.Fatalf("a refused enqueue left %d items", st.Total)
		}
		items, err := q.EnqueueDocuments(ctx, 3, 2, 1)
		if err != nil || len(items) != 2 {
			t.Fatalf("EnqueueDocuments(2, 1) = %v, %v", items, err)
		}
		if it := get(t, q, items[0]); it.ContentID != 2 || it.Priority != 3 || it.Status != kgworker.StatusPending {
			t.Errorf("first item %+v, want content 2 pending at priority 3", it)
		}
	})
}

func TestClaimBatchOrderAndLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		type entry struct {
			content  int64
			priority int
		}
		for _, tc := range []struct {
			name    string
			entries []entry
			n       int
			want    []int64 // content ids, in claim order
			rest    []int64 // content ids claimed by a second, larger claim
		}{
			{
				name:    "higher priority first then oldest",
				entries: []entry{{1, 1}, {2, 5}, {3, 1}, {4, 5}, {5, 3}},
				n:       3,
				want:    []int64{2, 4, 5},
				rest:    []int64{1, 3},
			},
			{
				name:    "batch larger than queue",
				entries: []entry{{1, 1}, {2, 1}},
				n:       5,
				want:    []int64{1, 2},
			},
			{
				name: "empty queue",
				n:    5,
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				clk := newClock()
				q, _ := openQueue(t, be, kgworker.WithClock(clk.Now))
				for _, e := range tc.entries {
					enqueue(t, q, e.content, e.priority)
				}
				items := claim(t, q, "w1", tc.n, time.Minute)
				if got := contentIDs(items); !slices.Equal(got, tc.want) {
					t.Fatalf("claimed content ids %v, want %v", got, tc.want)
				}
				for _, it := range items {
					stored := get(t, q, it.ID)
					if stored.Status != kgworker.StatusProcessing || stored.LeaseOwner != "w1" {
						t.Errorf("item %d: status %q owner %q, want processing by w1", it.ID, stored.Status, stored.LeaseOwner)
					}
					if want := clk.Now().Add(time.Minute); !stored.LeaseExpiresAt.Equal(want) {
						t.Errorf("item %d: lease expires %v, want %v", it.ID, stored.LeaseExpiresAt, want)
					}
					if !stored.ProcessingStartedAt.Equal(clk.Now()) {
						t.Errorf("item %d: processing started %v, want %v", it.ID, stored.ProcessingStartedAt, clk.Now())
					}
				}
				more := claim(t, q, "w2", 100, time.Minute)
				if got := contentIDs(more); !slices.Equal(got, tc.rest) {
					t.Errorf("second claim got content ids %v, want %v", got, tc.rest)
				}
			})
		}
	})
}

func contentIDs(items []kgworker.Item) []int64 {
	var out []int64
	for _, it := range items {
		out = append(out, it.ContentID)
	}
	return out
}

func TestClaimBatchRejects(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := openQueue(t, be)
		enqueue(t, q, 1, 1)
		for _, tc := range []struct {
			name  string
			owner string
			n     int
			lease time.Duration
			want  string
		}{
			{"no owner", "", 1, time.Minute, `invalid lease owner "": must not be empty`},
			{"zero batch", "w", 0, time.Minute, "invalid batch size 0: must be positive"},
			{"zero lease", "w", 1, 0, "invalid lease 0s: must be positive"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := q.ClaimBatch(context.Background(), tc.owner, tc.n, tc.lease)
				if err == nil || err.Error() != tc.want {
					t.Errorf("ClaimBatch error = %v, want %q", err, tc.want)
				}
			})
		}
		if st, _ := q.Stats(context.Background()); st.Pending != 1 {
			t.Errorf("pending = %d after rejected claims, want 1", st.Pending)
		}
	})
}

func sp(s string) *string { return &s }

func sampleResult() *kgworker.IngestResult {
	return &kgworker.IngestResult{
		Success:                true,
		ContentID:              7,
		EntitiesExtracted:      2,
		RelationshipsExtracted: 1,
		ProcessingTimeMS:       1234,
		Neo4jDocumentID:        "doc-7",
		Entities: []kgworker.Entity{
			{Text: "Go", Normalized: "go", TypePrimary: "Technology", TypeSub1: sp("Language"), Confidence: 0.9,
				Neo4jNodeID: sp("n1"), ChunkAppearances: []kgworker.ChunkAppearance{{VectorRowID: 700, ChunkIndex: 0, OffsetStart: 0, OffsetEnd: 2}}},
			{Text: "SQLite", Normalized: "sqlite", TypePrimary: "Technology", TypeSub1: sp("Database"), TypeSub2: sp("Embedded"),
				Confidence: 0.8, Neo4jNodeID: sp("n2"), SpansMultipleChunks: true, ChunkAppearances: []kgworker.ChunkAppearance{
					{VectorRowID: 700, ChunkIndex: 0, OffsetStart: 8, OffsetEnd: 14}, {VectorRowID: 701, ChunkIndex: 1, OffsetStart: 5, OffsetEnd: 11}}},
		},
		Relationships: []kgworker.Relationship{
			{SubjectText: "Go", Predicate: "uses", ObjectText: "SQLite", Confidence: 0.7, Context: "Go uses SQLite",
				Neo4jRelationshipID: sp("r1"), SpansChunks: true, ChunkRowIDs: []int64{700, 701}},
		},
		Summary: json.RawMessage(`{"entities_by_type":{"Technology":2},"relationships_by_predicate":{"uses":1},"chunks_with_entities":2,"avg_entities_per_chunk":1.5}`),
	}
}

func TestCompleteWritesResultsWithItem(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		clk := newClock()
		q, path := openQueue(t, be, kgworker.WithClock(clk.Now))
		db := rawDB(t, path)
		addContent(t, db, 7, 2)
		id := enqueue(t, q, 7, 1)
		claim(t, q, "w1", 1, time.Minute)
		clk.Advance(3 * time.Second)

		if err := q.Complete(context.Background(), "w1", id, sampleResult()); err != nil {
			t.Fatalf("Complete: %v", err)
		}

		it := get(t, q, id)
		if it.Status != kgworker.StatusCompleted || it.LeaseOwner != "" || !it.LeaseExpiresAt.IsZero() {
			t.Errorf("item after Complete: status %q owner %q lease %v, want completed without lease", it.Status, it.LeaseOwner, it.LeaseExpiresAt)
		}
		if !it.ProcessedAt.Equal(clk.Now()) {
			t.Errorf("processed_at = %v, want %v", it.ProcessedAt, clk.Now())
		}
		var summary map[string]any
		if err := json.Unmarshal([]byte(it.ResultSummary), &summary); err != nil {
			t.Fatalf("result_summary %q is not JSON: %v", it.ResultSummary, err)
		}
		if summary["entities_extracted"] != 2.0 || summary["relationships_extracted"] != 1.0 || summary["neo4j_document_id"] != "doc-7" ||
			summary["processing_time_ms"] != 1234.0 || summary["summary"].(map[string]any)["chunks_with_entities"] != 2.0 {
			t.Errorf("result_summary = %v, want 2 entities, 1 relationship, doc-7 and the summary", summary)
		}

		var processed bool
		var entities, rels int
		var docID, processedAt string
		if err := db.QueryRow(`SELECT kg_processed, kg_entity_count, kg_relationship_count, kg_document_id, kg_processed_at
FROM crawled_content WHERE id = 7`).Scan(&processed, &entities, &rels, &docID, &processedAt); err != nil {
			t.Fatal(err)
		}
		if !processed || entities != 2 || rels != 1 || docID != "doc-7" || !strings.HasPrefix(processedAt, "2025-10-21") {
			t.Errorf("crawled_content kg columns = %v %d %d %q %q, want true 2 1 doc-7 and a timestamp", processed, entities, rels, docID, processedAt)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM content_chunks WHERE content_id = 7 AND kg_processed = TRUE"); n != 2 {
			t.Errorf("%d chunks marked kg_processed, want 2", n)
		}

		var (
			text, norm, primary, sub1, node string
			sub2, sub3                      sql.NullString
			conf                            float64
			rowid, start, end               int
			spans                           bool
		)
		if err := db.QueryRow(`SELECT entity_text, entity_normalized, entity_type_primary, entity_type_sub1, entity_type_sub2,
	entity_type_sub3, confidence, chunk_rowid, offset_start, offset_end, neo4j_node_id, spans_multiple_chunks
FROM chunk_entities WHERE content_id = 7 AND entity_text = 'SQLite' AND chunk_rowid = 701`).Scan(
			&text, &norm, &primary, &sub1, &sub2, &sub3, &conf, &rowid, &start, &end, &node, &spans); err != nil {
			t.Fatal(err)
		}
		if norm != "sqlite" || primary != "Technology" || sub1 != "Database" || sub2.String != "Embedded" || sub3.Valid ||
			conf != 0.8 || rowid != 701 || start != 5 || end != 11 || node != "n2" || !spans {
			t.Errorf("entity row = %q %q %q %v %v %v %d %d %d %q %v", norm, primary, sub1, sub2, sub3, conf, rowid, start, end, node, spans)
		}
		// One row per entity per chunk appearance.
		if got := queryInt(t, db, "SELECT count(*) FROM chunk_entities WHERE content_id = 7"); got != 3 {
			t.Errorf("%d entity rows, want 3 (Go in 700, SQLite in 700 and 701)", got)
		}
		if got := queryInt(t, db, "SELECT count(*) FROM chunk_entities WHERE content_id = 7 AND entity_text = 'SQLite' AND chunk_rowid = 700 AND offset_start = 8 AND offset_end = 14"); got != 1 {
			t.Errorf("SQLite's appearance in chunk 700 has %d rows with its offsets, want 1", got)
		}
		var subj, pred, obj, rowids string
		var relSpans bool
		if err := db.QueryRow(`SELECT subject_entity, predicate, object_entity, chunk_rowids, spans_chunks
FROM chunk_relationships WHERE content_id = 7`).Scan(&subj, &pred, &obj, &rowids, &relSpans); err != nil {
			t.Fatal(err)
		}
		if subj != "Go" || pred != "uses" || obj != "SQLite" || rowids != "[700,701]" || !relSpans {
			t.Errorf("relationship row = %q %q %q %q %v, want Go uses SQLite [700,701] true", subj, pred, obj, rowids, relSpans)
		}
	})
}

func TestCompleteReplacesEarlierResults(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, path := openQueue(t, be)
		db := rawDB(t, path)
		addContent(t, db, 7, 2)
		addContent(t, db, 8, 1)
		ctx := context.Background()

		other := enqueue(t, q, 8, 1)
		claim(t, q, "w1", 1, time.Minute)
		if err := q.Complete(ctx, "w1", other, sampleResult()); err != nil {
			t.Fatal(err)
		}

		first := enqueue(t, q, 7, 1)
		claim(t, q, "w1", 1, time.Minute)
		if err := q.Complete(ctx, "w1", first, sampleResult()); err != nil {
			t.Fatal(err)
		}

		second := enqueue(t, q, 7, 1)
		claim(t, q, "w2", 1, time.Minute)
		again := &kgworker.IngestResult{
			Success: true, EntitiesExtracted: 1, RelationshipsExtracted: 0, Neo4jDocumentID: "doc-7b",
			Entities: []kgworker.Entity{{Text: "Rust", Normalized: "rust", TypePrimary: "Technology",
				ChunkAppearances: []kgworker.ChunkAppearance{{VectorRowID: 700}}}},
		}
		if err := q.Complete(ctx, "w2", second, again); err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			name  string
			query string
			want  int
		}{
			{"entities of reprocessed content", "SELECT count(*) FROM chunk_entities WHERE content_id = 7", 1},
			{"the new entity", "SELECT count(*) FROM chunk_entities WHERE content_id = 7 AND entity_text = 'Rust'", 1},
			{"relationships of reprocessed content", "SELECT count(*) FROM chunk_relationships WHERE content_id = 7", 0},
			{"entity count column", "SELECT kg_entity_count FROM crawled_content WHERE id = 7", 1},
			{"entities of other content kept", "SELECT count(*) FROM chunk_entities WHERE content_id = 8", 3},
			{"relationships of other content kept", "SELECT count(*) FROM chunk_relationships WHERE content_id = 8", 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := queryInt(t, db, tc.query); got != tc.want {
					t.Errorf("%s = %d, want %d", tc.query, got, tc.want)
				}
			})
		}
	})
}

// TestWritesNeedTheLease takes an item over from a worker whose lease
// expired and checks that the old holder can no longer change it.
func TestWritesNeedTheLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, tc := range []struct {
			name string
			op   func(q *kgworker.Queue, id int64) error
		}{
			{"complete", func(q *kgworker.Queue, id int64) error {
				return q.Complete(context.Background(), "old", id, sampleResult())
			}},
			{"fail", func(q *kgworker.Queue, id int64) error {
				_, err := q.Fail(context.Background(), "old", id, "boom")
				return err
			}},
			{"skip", func(q *kgworker.Queue, id int64) error {
				return q.Skip(context.Background(), "old", id, "no reason")
			}},
			{"release", func(q *kgworker.Queue, id int64) error {
				if n, err := q.Release(context.Background(), "old", id); err != nil || n != 0 {
					return errors.Join(err, errors.New("released an item it does not hold"))
				}
				return kgworker.ErrLeaseLost
			}},
			{"extend", func(q *kgworker.Queue, id int64) error {
				if n, err := q.ExtendLease(context.Background(), "old", time.Hour, id); err != nil || n != 0 {
					return errors.Join(err, errors.New("extended a lease it does not hold"))
				}
				return kgworker.ErrLeaseLost
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				clk := newClock()
				q, path := openQueue(t, be, kgworker.WithClock(clk.Now))
				db := rawDB(t, path)
				addContent(t, db, 7, 2)
				id := enqueue(t, q, 7, 1)
				claim(t, q, "old", 1, time.Minute)
				clk.Advance(2 * time.Minute)
				if n, err := q.ReclaimExpired(context.Background()); err != nil || n != 1 {
					t.Fatalf("ReclaimExpired = %d, %v; want 1", n, err)
				}
				clk.Advance(time.Hour)
				if got := claim(t, q, "new", 1, time.Minute); len(got) != 1 {
					t.Fatalf("new owner claimed %d items, want 1", len(got))
				}

				if err := tc.op(q, id); !errors.Is(err, kgworker.ErrLeaseLost) {
					t.Fatalf("old owner's %s: error %v, want ErrLeaseLost", tc.name, err)
				}
				it := get(t, q, id)
				if it.Status != kgworker.StatusProcessing || it.LeaseOwner != "new" || it.RetryCount != 1 {
					t.Errorf("item = status %q owner %q retries %d, want processing by new with 1 retry", it.Status, it.LeaseOwner, it.RetryCount)
				}
				if want := clk.Now().Add(time.Minute); !it.LeaseExpiresAt.Equal(want) {
					t.Errorf("lease expires %v, want the new owner's %v", it.LeaseExpiresAt, want)
				}
				if n := queryInt(t, db, "SELECT count(*) FROM chunk_entities"); n != 0 {
					t.Errorf("%d entity rows written by the old owner, want 0", n)
				}
				if n := queryInt(t, db, "SELECT kg_processed FROM crawled_content WHERE id = 7"); n != 0 {
					t.Errorf("crawled_content marked processed by the old owner")
				}
			})
		}
	})
}

func TestFailBacksOffThenFails(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		clk := newClock()
		q, _ := openQueue(t, be, kgworker.WithClock(clk.Now), kgworker.WithMaxRetries(2),
			kgworker.WithBackoff(10*time.Second, 15*time.Second))
		id := enqueue(t, q, 1, 1)
		ctx := context.Background()
		for _, tc := range []struct {
			name       string
			wantStatus kgworker.Status
			wantRetry  int
			minDelay   time.Duration
			maxDelay   time.Duration
		}{
			{"first failure retries after about the base", kgworker.StatusPending, 1, 5 * time.Second, 10 * time.Second},
			{"second failure doubles up to the cap", kgworker.StatusPending, 2, 7500 * time.Millisecond, 15 * time.Second},
			{"third failure is final", kgworker.StatusFailed, 3, 0, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := claim(t, q, "w", 1, time.Minute); len(got) != 1 || got[0].ID != id {
					t.Fatalf("claimed %v, want item %d", ids(got), id)
				}
				status, err := q.Fail(ctx, "w", id, "extraction failed")
				if err != nil {
					t.Fatal(err)
				}
				it := get(t, q, id)
				if status != tc.wantStatus || it.Status != tc.wantStatus || it.RetryCount != tc.wantRetry {
					t.Fatalf("after Fail: returned %q, stored %q with %d retries; want %q with %d",
						status, it.Status, it.RetryCount, tc.wantStatus, tc.wantRetry)
				}
				if it.LeaseOwner != "" {
					t.Errorf("lease owner %q kept after Fail", it.LeaseOwner)
				}
				if tc.wantStatus == kgworker.StatusFailed {
					if !strings.Contains(it.ErrorMessage, "extraction failed") || !strings.Contains(it.ErrorMessage, "3 attempts") {
						t.Errorf("error_message = %q, want the reason and the attempt count", it.ErrorMessage)
					}
					if got := claim(t, q, "w", 1, time.Minute); len(got) != 0 {
						t.Errorf("failed item claimed again: %v", ids(got))
					}
					return
				}
				delay := it.NextAttemptAt.Sub(clk.Now())
				if delay < tc.minDelay || delay > tc.maxDelay {
					t.Errorf("next attempt in %s, want between %s and %s", delay, tc.minDelay, tc.maxDelay)
				}
				if got := claim(t, q, "w", 1, time.Minute); len(got) != 0 {
					t.Errorf("item claimed %s before its next attempt", delay)
				}
				clk.Advance(delay)
			})
		}
	})
}

func TestReleaseSpendsNoAttempt(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := openQueue(t, be)
		for c := int64(1); c <= 3; c++ {
			enqueue(t, q, c, 1)
		}
		ctx := context.Background()
		items := claim(t, q, "w", 3, time.Minute)
		n, err := q.Release(ctx, "w", items[0].ID, items[1].ID)
		if err != nil || n != 2 {
			t.Fatalf("Release = %d, %v; want 2", n, err)
		}
		for i, it := range items {
			got := get(t, q, it.ID)
			wantStatus, wantOwner := kgworker.StatusPending, ""
			if i == 2 {
				wantStatus, wantOwner = kgworker.StatusProcessing, "w"
			}
			if got.Status != wantStatus || got.LeaseOwner != wantOwner || got.RetryCount != 0 || !got.NextAttemptAt.IsZero() {
				t.Errorf("item %d: status %q owner %q retries %d next %v; want %q owner %q, 0 retries, no backoff",
					it.ID, got.Status, got.LeaseOwner, got.RetryCount, got.NextAttemptAt, wantStatus, wantOwner)
			}
		}
		again := claim(t, q, "w2", 5, time.Minute)
		if !slices.Equal(ids(again), ids(items[:2])) {
			t.Errorf("released items claimed again as %v, want %v at once", ids(again), ids(items[:2]))
		}
	})
}

func TestReclaimExpired(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, tc := range []struct {
			name       string
			maxRetries int
			setup      func(t *testing.T, q *kgworker.Queue, db *sql.DB, clk *clock) int64
			wantN      int
			wantStatus kgworker.Status
			wantRetry  int
			wantError  string
		}{
			{
				name: "expired lease goes back to pending and spends an attempt", maxRetries: 3,
				setup: func(t *testing.T, q *kgworker.Queue, _ *sql.DB, clk *clock) int64 {
					id := enqueue(t, q, 1, 1)
					claim(t, q, "crashed", 1, time.Minute)
					clk.Advance(time.Minute + time.Second)
					return id
				},
				wantN: 1, wantStatus: kgworker.StatusPending, wantRetry: 1, wantError: "lease of crashed expired",
			},
			{
				name: "live lease is left alone", maxRetries: 3,
				setup: func(t *testing.T, q *kgworker.Queue, _ *sql.DB, clk *clock) int64 {
					id := enqueue(t, q, 1, 1)
					claim(t, q, "alive", 1, time.Minute)
					clk.Advance(59 * time.Second)
					return id
				},
				wantN: 0, wantStatus: kgworker.StatusProcessing, wantRetry: 0,
			},
			{
				name: "expired lease on the last attempt fails the item", maxRetries: 0,
				setup: func(t *testing.T, q *kgworker.Queue, _ *sql.DB, clk *clock) int64 {
					id := enqueue(t, q, 1, 1)
					claim(t, q, "crashed", 1, time.Minute)
					clk.Advance(2 * time.Minute)
					return id
				},
				wantN: 1, wantStatus: kgworker.StatusFailed, wantRetry: 1, wantError: "gave up after 1 attempts",
			},
			{
				name: "processing row without a lease from the old system", maxRetries: 3,
				setup: func(t *testing.T, _ *kgworker.Queue, db *sql.DB, _ *clock) int64 {
					var id int64
					err := db.QueryRow("INSERT INTO kg_processing_queue(content_id, status, processing_started_at) VALUES (1, 'processing', '2025-01-01 00:00:00') RETURNING id").Scan(&id)
					if err != nil {
						t.Fatal(err)
					}
					return id
				},
				wantN: 1, wantStatus: kgworker.StatusPending, wantRetry: 1, wantError: "lease expired without an owner",
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				clk := newClock()
				q, path := openQueue(t, be, kgworker.WithClock(clk.Now), kgworker.WithMaxRetries(tc.maxRetries))
				id := tc.setup(t, q, rawDB(t, path), clk)
				n, err := q.ReclaimExpired(context.Background())
				if err != nil || n != tc.wantN {
					t.Fatalf("ReclaimExpired = %d, %v; want %d", n, err, tc.wantN)
				}
				it := get(t, q, id)
				if it.Status != tc.wantStatus || it.RetryCount != tc.wantRetry {
					t.Errorf("item: status %q retries %d, want %q and %d", it.Status, it.RetryCount, tc.wantStatus, tc.wantRetry)
				}
				if !strings.Contains(it.ErrorMessage, tc.wantError) {
					t.Errorf("error_message = %q, want it to contain %q", it.ErrorMessage, tc.wantError)
				}
				if tc.wantStatus == kgworker.StatusPending && (it.LeaseOwner != "" || !it.NextAttemptAt.After(clk.Now())) {
					t.Errorf("reclaimed item: owner %q next attempt %v, want no owner and a backoff after %v", it.LeaseOwner, it.NextAttemptAt, clk.Now())
				}
			})
		}
	})
}

func TestSkip(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := openQueue(t, be)
		id := enqueue(t, q, 1, 1)
		claim(t, q, "w", 1, time.Minute)
		if err := q.Skip(context.Background(), "w", id, "content_id 1 has no crawled_content row"); err != nil {
			t.Fatal(err)
		}
		it := get(t, q, id)
		if it.Status != kgworker.StatusSkipped || it.SkippedReason != "content_id 1 has no crawled_content row" || it.LeaseOwner != "" {
			t.Errorf("item = %q reason %q owner %q, want skipped with the reason and no owner", it.Status, it.SkippedReason, it.LeaseOwner)
		}
	})
}

func TestRetryFailed(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := openQueue(t, be, kgworker.WithMaxRetries(0))
		ctx := context.Background()
		var failed []int64
		for c := int64(1); c <= 2; c++ {
			id := enqueue(t, q, c, 1)
			claim(t, q, "w", 1, time.Minute)
			if st, err := q.Fail(ctx, "w", id, "boom"); err != nil || st != kgworker.StatusFailed {
				t.Fatalf("Fail = %q, %v; want failed", st, err)
			}
			failed = append(failed, id)
		}
		done := enqueue(t, q, 3, 1)
		claim(t, q, "w", 1, time.Minute)
		if err := q.Skip(ctx, "w", done, "not needed"); err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			name        string
			ids         []int64
			want        int
			wantPending []int64
		}{
			{"one by id", failed[:1], 1, failed[:1]},
			{"all the rest", nil, 1, []int64{failed[1], failed[0]}},
			{"none left", nil, 0, []int64{failed[1], failed[0]}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n, err := q.RetryFailed(ctx, tc.ids...)
				if err != nil || n != tc.want {
					t.Fatalf("RetryFailed(%v) = %d, %v; want %d", tc.ids, n, err, tc.want)
				}
				pending, err := q.List(ctx, kgworker.StatusPending, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(pending), tc.wantPending) {
					t.Errorf("pending = %v, want %v", ids(pending), tc.wantPending)
				}
				for _, it := range pending {
					if it.RetryCount != 0 || !it.NextAttemptAt.IsZero() {
						t.Errorf("item %d: retries %d next %v, want reset", it.ID, it.RetryCount, it.NextAttemptAt)
					}
				}
			})
		}
		if it := get(t, q, done); it.Status != kgworker.StatusSkipped {
			t.Errorf("skipped item became %q", it.Status)
		}
	})
}

func TestListAndStats(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := openQueue(t, be, kgworker.WithMaxRetries(0))
		ctx := context.Background()
		low := enqueue(t, q, 1, 1)
		high := enqueue(t, q, 2, 9)
		enqueue(t, q, 3, 1)
		enqueue(t, q, 4, 1)
		claimed := claim(t, q, "w", 2, time.Minute) // contents 2 and 1
		if _, err := q.Fail(ctx, "w", claimed[0].ID, "boom"); err != nil {
			t.Fatal(err)
		}

		st, err := q.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := kgworker.Counts{Pending: 2, Processing: 1, Failed: 1, Total: 4}
		if st != want {
			t.Errorf("Stats = %+v, want %+v", st, want)
		}
		js, _ := json.Marshal(st)
		if string(js) != `{"pending":2,"processing":1,"completed":0,"failed":1,"skipped":0,"total":4}` {
			t.Errorf("Stats JSON = %s", js)
		}

		for _, tc := range []struct {
			name    string
			status  kgworker.Status
			limit   int
			want    []int64
			wantErr string
		}{
			{name: "all, newest first", want: []int64{4, 3, high, low}},
			{name: "limited", limit: 2, want: []int64{4, 3}},
			{name: "by status", status: kgworker.StatusPending, want: []int64{4, 3}},
			{name: "failed", status: kgworker.StatusFailed, want: []int64{high}},
			{name: "unknown status", status: "done", wantErr: `invalid status "done": must be one of pending, processing, completed, failed, skipped`},
			{name: "negative limit", limit: -1, wantErr: "invalid limit -1: must be zero (no limit) or more"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				items, err := q.List(ctx, tc.status, tc.limit)
				if tc.wantErr != "" {
					if err == nil || err.Error() != tc.wantErr {
						t.Fatalf("List error = %v, want %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(ids(items), tc.want) {
					t.Errorf("List = %v, want %v", ids(items), tc.want)
				}
			})
		}
	})
}

func TestContent(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, path := openQueue(t, be)
		db := rawDB(t, path)
		md := strings.Repeat("# Markdown ", 5)
		mustExec(t, db, `INSERT INTO crawled_content(id, url, title, markdown, metadata) VALUES
	(1, 'https://a', 'A', ?1, '{"k":1}'),
	(2, 'https://b', 'B', ?1, NULL),
	(3, 'https://c', 'C', ?1, 'not json'),
	(5, 'https://e', 'E', '# too short', NULL),
	(6, 'https://f', 'F', ?1, NULL),
	(7, 'ftp://g', 'G', ?1, NULL),
	(8, 'https://h', 'H', ?1, '[1, 2]')`, md)
		mustExec(t, db, `INSERT INTO content_chunks(rowid, content_id, chunk_index, chunk_text, char_start, char_end) VALUES
	(11, 1, 1, 'the second chunk', 10, 16), (10, 1, 0, 'the first chunk', 0, 5), (20, 2, 0, 'the only chunk', 0, 14),
	(30, 3, 0, 'the only chunk', 0, 14), (50, 5, 0, 'the only chunk', 0, 14), (70, 7, 0, 'the only chunk', 0, 14),
	(80, 8, 0, 'the only chunk', 0, 14)`)
		ctx := context.Background()
		for _, tc := range []struct {
			name     string
			id       int64
			wantErr  error
			wantMeta string
			wantRows []int64
		}{
			{name: "chunks in order", id: 1, wantMeta: `{"k":1}`, wantRows: []int64{10, 11}},
			{name: "no metadata", id: 2, wantMeta: `{}`, wantRows: []int64{20}},
			{name: "metadata not JSON", id: 3, wantErr: kgworker.ErrInvalidContent},
			{name: "markdown below the service's minimum", id: 5, wantErr: kgworker.ErrInvalidContent},
			{name: "no chunks", id: 6, wantErr: kgworker.ErrInvalidContent},
			{name: "url not http", id: 7, wantErr: kgworker.ErrInvalidContent},
			{name: "metadata not an object", id: 8, wantErr: kgworker.ErrInvalidContent},
			{name: "no such content", id: 4, wantErr: kgworker.ErrContentNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, err := q.Content(ctx, tc.id)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("Content(%d) error = %v, want %v", tc.id, err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if string(c.Metadata) != tc.wantMeta {
					t.Errorf("metadata = %s, want %s", c.Metadata, tc.wantMeta)
				}
				var rows []int64
				for _, ch := range c.Chunks {
					rows = append(rows, ch.VectorRowID)
				}
				if !slices.Equal(rows, tc.wantRows) {
					t.Errorf("chunk rowids = %v, want %v", rows, tc.wantRows)
				}
			})
		}
	})
}

func TestWaitForWork(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, tc := range []struct {
			name    string
			timeout time.Duration
			act     func(other *kgworker.Queue, db *sql.DB) error
			want    bool
			within  time.Duration
		}{
			{
				name:    "item enqueued through another connection wakes the waiter",
				timeout: 10 * time.Second,
				act: func(other *kgworker.Queue, _ *sql.DB) error {
					time.Sleep(200 * time.Millisecond)
					_, err := other.Enqueue(context.Background(), 1, 1)
					return err
				},
				want:   true,
				within: 2 * time.Second,
			},
			{
				name:    "nothing to do waits out the timeout",
				timeout: 300 * time.Millisecond,
				act:     func(*kgworker.Queue, *sql.DB) error { return nil },
				want:    false,
				within:  2 * time.Second,
			},
			{
				name:    "a change that is not due work does not wake the waiter",
				timeout: 500 * time.Millisecond,
				act: func(_ *kgworker.Queue, db *sql.DB) error {
					time.Sleep(100 * time.Millisecond)
					_, err := db.Exec(`INSERT INTO kg_processing_queue(content_id, status, next_attempt_at)
VALUES (1, 'completed', NULL), (2, 'pending', '2999-01-01 00:00:00.000')`)
					return err
				},
				want:   false,
				within: 2 * time.Second,
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q, path := openQueue(t, be)
				other := openQueueAt(t, path)
				db := rawDB(t, path)
				acted := make(chan error, 1)
				go func() { acted <- tc.act(other, db) }()
				start := time.Now()
				got, err := q.WaitForWork(context.Background(), tc.timeout)
				took := time.Since(start)
				if err := <-acted; err != nil {
					t.Fatalf("change from the other connection: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want || took > tc.within {
					t.Errorf("WaitForWork = %v after %s, want %v within %s", got, took, tc.want, tc.within)
				}
				if !tc.want && took < tc.timeout {
					t.Errorf("WaitForWork returned after %s, before its timeout %s", took, tc.timeout)
				}
			})
		}
	})
}

func TestWaitForWorkEndsWithContext(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		q, _ := openQueue(t, be)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		got, err := q.WaitForWork(ctx, time.Minute)
		if got || err != nil || time.Since(start) > 5*time.Second {
			t.Errorf("WaitForWork after cancel = %v, %v in %s; want false, nil, promptly", got, err, time.Since(start))
		}
	})
}

// TestWaitForWorkWakesOnNotify: on PostgreSQL a waiter wakes on the
// queue's NOTIFY, within milliseconds of the commit that made an item
// pending, whichever connection or host made it (a raw INSERT here, as the
// crawler would), and not on the poll interval.
func TestWaitForWorkWakesOnNotify(t *testing.T) {
	be := backends[1]
	q, path := openQueue(t, be)
	db := rawDB(t, path)
	ctx := context.Background()
	var lat []time.Duration
	for round := 0; round < 15; round++ {
		woke := make(chan time.Time, 1)
		go func() {
			ok, err := q.WaitForWork(ctx, 30*time.Second)
			if err != nil || !ok {
				t.Errorf("round %d: WaitForWork = %v, %v", round, ok, err)
			}
			woke <- time.Now()
		}()
		time.Sleep(100 * time.Millisecond) // the waiter is listening
		mustExec(t, db, "INSERT INTO kg_processing_queue(content_id, status) VALUES (?, 'pending')", round+1)
		committed := time.Now()
		select {
		case at := <-woke:
			lat = append(lat, at.Sub(committed))
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the waiter did not wake", round)
		}
		claim(t, q, "w", 1, time.Minute)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("wake after commit: median %s, max %s", lat[len(lat)/2], lat[len(lat)-1])
	if lat[len(lat)/2] > 25*time.Millisecond {
		t.Errorf("median wake %s after the commit, want a few milliseconds (NOTIFY, not polling)", lat[len(lat)/2])
	}
}
