package kgworker_test

import (
	"database/sql"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/internal/testkit/kgservicefake"
	"github.com/kato-manager/kato-manager/kgworker"
)

// contractSchema is the database as the original created it, copied from
// the KG service contract.
const contractSchema = `
CREATE TABLE crawled_content(id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT UNIQUE NOT NULL, title TEXT,
  content TEXT, markdown TEXT, content_hash TEXT, timestamp DATETIME DEFAULT CURRENT_TIMESTAMP,
  added_by_session TEXT, retention_policy TEXT DEFAULT 'permanent', tags TEXT, metadata TEXT,
  kg_processed BOOLEAN DEFAULT 0, kg_entity_count INTEGER DEFAULT 0,
  kg_relationship_count INTEGER DEFAULT 0, kg_document_id TEXT, kg_processed_at DATETIME);
CREATE TABLE content_chunks(rowid INTEGER PRIMARY KEY, content_id INTEGER NOT NULL REFERENCES crawled_content(id) ON DELETE
  CASCADE, chunk_index INTEGER NOT NULL, chunk_text TEXT NOT NULL, char_start INTEGER NOT NULL,
  char_end INTEGER NOT NULL, word_count INTEGER, kg_processed BOOLEAN DEFAULT 0,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE chunk_entities(id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_rowid INTEGER NOT NULL REFERENCES content_chunks(rowid),
  content_id INTEGER NOT NULL REFERENCES crawled_content(id), entity_text TEXT NOT NULL, entity_normalized TEXT,
  entity_type_primary TEXT, entity_type_sub1 TEXT, entity_type_sub2 TEXT, entity_type_sub3 TEXT,
  confidence REAL, offset_start INTEGER, offset_end INTEGER, neo4j_node_id TEXT,
  spans_multiple_chunks BOOLEAN DEFAULT 0, created_at DATETIME DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE chunk_relationships(id INTEGER PRIMARY KEY AUTOINCREMENT, content_id INTEGER NOT NULL REFERENCES
  crawled_content(id), subject_entity TEXT NOT NULL, predicate TEXT NOT NULL, object_entity TEXT NOT
  NULL, confidence REAL, context TEXT, neo4j_relationship_id TEXT, spans_chunks BOOLEAN DEFAULT 0,
  chunk_rowids TEXT, created_at DATETIME DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE kg_processing_queue(id INTEGER PRIMARY KEY AUTOINCREMENT, content_id INTEGER NOT NULL REFERENCES
  crawled_content(id), status TEXT DEFAULT 'pending', priority INTEGER DEFAULT 1,
  queued_at DATETIME DEFAULT CURRENT_TIMESTAMP, processing_started_at DATETIME,
  processed_at DATETIME, retry_count INTEGER DEFAULT 0, error_message TEXT, result_summary TEXT,
  skipped_reason TEXT);
CREATE INDEX idx_queue_status ON kg_processing_queue(status, priority, queued_at);
CREATE INDEX idx_queue_content ON kg_processing_queue(content_id);
CREATE INDEX idx_chunks_content ON content_chunks(content_id);
CREATE INDEX idx_entities_chunk ON chunk_entities(chunk_rowid);
CREATE INDEX idx_entities_content ON chunk_entities(content_id);
CREATE INDEX idx_relationships_content ON chunk_relationships(content_id);
`

// TestContractRoundTrip: a database of the original shape, written as the
// crawler left it; the request is built from it, the double answers with
// the service's model, and every column the contract names is written back
// from that answer. Processing the document again replaces the rows.
func TestContractRoundTrip(t *testing.T) {
	path := createFile(t, contractSchema)
	db := rawDB(t, path)
	md := "# Zürich\n\nZürich is a city in Switzerland. It lies on Lake Zürich and is home to ETH."
	mustExec(t, db, `INSERT INTO crawled_content(id, url, title, content, markdown, content_hash, added_by_session, tags, metadata)
VALUES (41, 'https://example.org/zurich', 'Zürich', 'html', ?, 'h', 's1', 'city,europe', '{"lang":"de","tags":["city","europe"]}')`, md)
	chunks := []struct {
		rowid      int64
		index      int
		start, end int
		text       string
	}{
		{9001, 0, 0, 44, "Zürich is a city in Switzerland."},
		{9002, 1, 45, 80, "It lies on Lake Zürich and is home to ETH."},
		{9005, 3, 81, 99, "A third chunk, with index gap."},
	}
	for _, c := range chunks {
		mustExec(t, db, `INSERT INTO content_chunks(rowid, content_id, chunk_index, chunk_text, char_start, char_end, word_count)
VALUES (?, 41, ?, ?, ?, ?, 6)`, c.rowid, c.index, c.text, c.start, c.end)
	}
	mustExec(t, db, `INSERT INTO kg_processing_queue(content_id, priority) VALUES (41, 1)`)

	r := newRigAt(t, path)
	run := r.start(t, kgworker.Opts{})
	waitFor(t, 10*time.Second, "completion", func() bool { return r.counts(t).Completed == 1 })
	run.stop(t)

	req, ok := r.fake.LastRequest(41)
	if !ok {
		t.Fatal("the double received nothing for content 41")
	}
	if req.ContentID != 41 || req.URL != "https://example.org/zurich" || req.Title != "Zürich" || req.Markdown != md {
		t.Errorf("request = %+v", req)
	}
	var meta map[string]any
	if err := json.Unmarshal(req.Metadata, &meta); err != nil || meta["lang"] != "de" {
		t.Errorf("request metadata = %s", req.Metadata)
	}
	if len(req.Chunks) != len(chunks) {
		t.Fatalf("request has %d chunks, want %d", len(req.Chunks), len(chunks))
	}
	for i, c := range chunks {
		want := kgservicefake.Chunk{VectorRowID: c.rowid, ChunkIndex: c.index, CharStart: c.start, CharEnd: c.end, Text: c.text}
		if req.Chunks[i] != want {
			t.Errorf("request chunk %d = %+v, want %+v", i, req.Chunks[i], want)
		}
	}
	answer := kgservicefake.Extract(req)
	checkWriteBack(t, db, 41, answer)

	// Again: the rows are replaced, not added.
	mustExec(t, db, `INSERT INTO kg_processing_queue(content_id, priority) VALUES (41, 1)`)
	run = r.start(t, kgworker.Opts{})
	waitFor(t, 10*time.Second, "the second completion", func() bool { return r.counts(t).Completed == 2 })
	run.stop(t)
	checkWriteBack(t, db, 41, answer)
}

// newRigAt is newRig on an existing file.
func newRigAt(t *testing.T, path string) *rig {
	t.Helper()
	r := newRig(t, serviceBackend)
	r.path, r.q = path, openQueueAt(t, path)
	r.db = rawDB(t, path)
	return r
}

func nullStr(p *string) sql.NullString {
	if p == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *p, Valid: true}
}

// checkWriteBack compares every written column with the answer.
func checkWriteBack(t *testing.T, db *sql.DB, contentID int64, answer kgservicefake.IngestResponse) {
	t.Helper()
	// chunk_entities: one row per entity per appearance, in answer order.
	type entityRow struct {
		ChunkRowID, ContentID     int64
		Text, Normalized, Primary string
		Sub1, Sub2, Sub3, Node    sql.NullString
		Confidence                float64
		OffsetStart, OffsetEnd    int
		Spans                     bool
	}
	var want []entityRow
	for _, e := range answer.Entities {
		for _, a := range e.ChunkAppearances {
			want = append(want, entityRow{a.VectorRowID, contentID, e.Text, e.Normalized, e.TypePrimary,
				nullStr(e.TypeSub1), nullStr(e.TypeSub2), nullStr(e.TypeSub3), nullStr(e.Neo4jNodeID),
				e.Confidence, a.OffsetStart, a.OffsetEnd, e.SpansMultipleChunks})
		}
	}
	rows, err := db.Query(`SELECT chunk_rowid, content_id, entity_text, entity_normalized, entity_type_primary,
	entity_type_sub1, entity_type_sub2, entity_type_sub3, neo4j_node_id, confidence, offset_start, offset_end,
	spans_multiple_chunks, created_at FROM chunk_entities WHERE content_id = ? ORDER BY id`, contentID)
	if err != nil {
		t.Fatal(err)
	}
	var got []entityRow
	for rows.Next() {
		var e entityRow
		var created sql.NullString
		if err := rows.Scan(&e.ChunkRowID, &e.ContentID, &e.Text, &e.Normalized, &e.Primary, &e.Sub1, &e.Sub2, &e.Sub3,
			&e.Node, &e.Confidence, &e.OffsetStart, &e.OffsetEnd, &e.Spans, &created); err != nil {
			t.Fatal(err)
		}
		if !created.Valid {
			t.Error("an entity row has no created_at")
		}
		got = append(got, e)
	}
	rows.Close()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chunk_entities =\n%+v\nwant\n%+v", got, want)
	}

	type relRow struct {
		ContentID                  int64
		Subject, Predicate, Object string
		Confidence                 float64
		Context                    string
		RelID                      sql.NullString
		Spans                      bool
		RowIDs                     string
	}
	var wantRels []relRow
	for _, r := range answer.Relationships {
		ids, _ := json.Marshal(r.ChunkRowIDs)
		wantRels = append(wantRels, relRow{contentID, r.SubjectText, r.Predicate, r.ObjectText, r.Confidence, r.Context,
			nullStr(r.Neo4jRelationshipID), r.SpansChunks, string(ids)})
	}
	rows, err = db.Query(`SELECT content_id, subject_entity, predicate, object_entity, confidence, context,
	neo4j_relationship_id, spans_chunks, chunk_rowids FROM chunk_relationships WHERE content_id = ? ORDER BY id`, contentID)
	if err != nil {
		t.Fatal(err)
	}
	var gotRels []relRow
	for rows.Next() {
		var r relRow
		if err := rows.Scan(&r.ContentID, &r.Subject, &r.Predicate, &r.Object, &r.Confidence, &r.Context, &r.RelID, &r.Spans, &r.RowIDs); err != nil {
			t.Fatal(err)
		}
		gotRels = append(gotRels, r)
	}
	rows.Close()
	if !reflect.DeepEqual(gotRels, wantRels) {
		t.Errorf("chunk_relationships =\n%+v\nwant\n%+v", gotRels, wantRels)
	}

	var (
		processed               bool
		entities, relationships int
		docID, processedAt      sql.NullString
	)
	if err := db.QueryRow(`SELECT kg_processed, kg_entity_count, kg_relationship_count, kg_document_id, kg_processed_at
FROM crawled_content WHERE id = ?`, contentID).Scan(&processed, &entities, &relationships, &docID, &processedAt); err != nil {
		t.Fatal(err)
	}
	if !processed || entities != answer.EntitiesExtracted || relationships != answer.RelationshipsExtracted ||
		docID.String != answer.Neo4jDocumentID || !processedAt.Valid {
		t.Errorf("crawled_content kg columns = %v %d %d %v %v, want true %d %d %s and a time", processed, entities, relationships,
			docID, processedAt, answer.EntitiesExtracted, answer.RelationshipsExtracted, answer.Neo4jDocumentID)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM content_chunks WHERE content_id = ? AND kg_processed = TRUE", contentID); n != 3 {
		t.Errorf("%d chunks marked kg_processed, want 3", n)
	}

	var status, summary string
	var processedAtQ sql.NullString
	if err := db.QueryRow(`SELECT status, processed_at, result_summary FROM kg_processing_queue
WHERE content_id = ? ORDER BY id DESC LIMIT 1`, contentID).Scan(&status, &processedAtQ, &summary); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Entities      int                   `json:"entities_extracted"`
		Relationships int                   `json:"relationships_extracted"`
		DocID         string                `json:"neo4j_document_id"`
		Summary       kgservicefake.Summary `json:"summary"`
	}
	if err := json.Unmarshal([]byte(summary), &s); err != nil {
		t.Fatalf("result_summary %q: %v", summary, err)
	}
	if status != "completed" || !processedAtQ.Valid || s.Entities != answer.EntitiesExtracted ||
		s.Relationships != answer.RelationshipsExtracted || s.DocID != answer.Neo4jDocumentID ||
		!reflect.DeepEqual(s.Summary, answer.Summary) {
		t.Errorf("queue row = %s %v %s; want completed, a time and the counts and summary of %+v", status, processedAtQ, summary, answer.Summary)
	}
	for _, e := range got {
		if e.ChunkRowID == 0 {
			t.Error("an entity row has chunk_rowid 0")
		}
	}
}
