package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kato-manager/kato-manager/kgworker"
)

// legacyWorker is a model of the KG worker of the system kato-manager
// replaces, kept only as the benchmark's baseline. Every round it selects up
// to batch pending items, marks them processing without any guard against
// another worker having selected them too, sends them to the KG service one
// by one, writes the results back and then sleeps for poll, whether or not
// more work waits.
type legacyWorker struct {
	db     *sql.DB
	queue  *kgworker.Queue // only to load documents, as the KG Manager did with its own query
	client *kgworker.Client
	batch  int
	poll   time.Duration
}

// The KG Manager's fixed settings: five items per round, a round every five
// seconds.
const (
	legacyBatch = 5
	legacyPoll  = 5 * time.Second
)

// legacyTimeFormat matches the queue's timestamps so that both workers'
// rows read the same.
const legacyTimeFormat = "2006-01-02 15:04:05.000"

func legacyStamp(t time.Time) string { return t.UTC().Format(legacyTimeFormat) }

// run works the queue until ctx ends.
func (w *legacyWorker) run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := w.round(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(w.poll):
		}
	}
	return nil
}

type legacyItem struct{ id, contentID int64 }

// round is one poll: select, mark, process, write back.
func (w *legacyWorker) round(ctx context.Context) error {
	rows, err := w.db.QueryContext(ctx, `SELECT id, content_id FROM kg_processing_queue
WHERE status = 'pending' ORDER BY priority DESC, queued_at LIMIT ?`, w.batch)
	if err != nil {
		return fmt.Errorf("KG Manager model worker: select pending items: %w", err)
	}
	var items []legacyItem
	for rows.Next() {
		var it legacyItem
		if err := rows.Scan(&it.id, &it.contentID); err != nil {
			rows.Close()
			return fmt.Errorf("KG Manager model worker: select pending items: %w", err)
		}
		items = append(items, it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("KG Manager model worker: select pending items: %w", err)
	}
	if len(items) == 0 {
		return nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(items)), ", ")
	args := []any{legacyStamp(time.Now())}
	for _, it := range items {
		args = append(args, it.id)
	}
	if _, err := w.db.ExecContext(ctx, `UPDATE kg_processing_queue SET status = 'processing', processing_started_at = ?
WHERE id IN (`+marks+`)`, args...); err != nil {
		return fmt.Errorf("KG Manager model worker: mark %d items processing: %w", len(items), err)
	}
	for _, it := range items {
		if err := w.process(ctx, it); err != nil {
			return err
		}
	}
	return nil
}

func (w *legacyWorker) process(ctx context.Context, it legacyItem) error {
	content, err := w.queue.Content(ctx, it.contentID)
	if err != nil {
		return fmt.Errorf("KG Manager model worker: item %d: %w", it.id, err)
	}
	res, err := w.client.Ingest(ctx, kgworker.NewIngestRequest(content))
	if err != nil {
		_, dbErr := w.db.ExecContext(ctx, `UPDATE kg_processing_queue
SET status = 'failed', error_message = ?, retry_count = retry_count + 1, processed_at = ? WHERE id = ?`,
			err.Error(), legacyStamp(time.Now()), it.id)
		if dbErr != nil {
			return fmt.Errorf("KG Manager model worker: fail item %d: %w", it.id, dbErr)
		}
		return nil
	}
	if err := w.writeBack(ctx, it, res); err != nil {
		return fmt.Errorf("KG Manager model worker: write back item %d: %w", it.id, err)
	}
	return nil
}

// writeBack stores the result rows and marks the document and the item
// done, in one transaction.
func (w *legacyWorker) writeBack(ctx context.Context, it legacyItem, res *kgworker.IngestResult) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, e := range res.Entities {
		for _, a := range e.ChunkAppearances {
			if _, err := tx.ExecContext(ctx, `INSERT INTO chunk_entities(chunk_rowid, content_id, entity_text, entity_normalized,
	entity_type_primary, entity_type_sub1, confidence, offset_start, offset_end, neo4j_node_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.VectorRowID, it.contentID, e.Text, e.Normalized, e.TypePrimary, e.TypeSub1,
				e.Confidence, a.OffsetStart, a.OffsetEnd, e.Neo4jNodeID); err != nil {
				return err
			}
		}
	}
	for _, r := range res.Relationships {
		ids, err := json.Marshal(r.ChunkRowIDs)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO chunk_relationships(content_id, subject_entity, predicate, object_entity,
	confidence, context, neo4j_relationship_id, chunk_rowids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			it.contentID, r.SubjectText, r.Predicate, r.ObjectText, r.Confidence, r.Context, r.Neo4jRelationshipID, string(ids)); err != nil {
			return err
		}
	}
	now := legacyStamp(time.Now())
	if _, err := tx.ExecContext(ctx, `UPDATE crawled_content SET kg_processed = 1, kg_entity_count = ?, kg_relationship_count = ?,
	kg_document_id = ?, kg_processed_at = ? WHERE id = ?`,
		res.EntitiesExtracted, res.RelationshipsExtracted, res.Neo4jDocumentID, now, it.contentID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE kg_processing_queue SET status = 'completed', processed_at = ? WHERE id = ?`, now, it.id); err != nil {
		return err
	}
	return tx.Commit()
}
