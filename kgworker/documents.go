package kgworker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/kato-manager/kato-manager/config"
	"strconv"
	"strings"
)

// DocumentSummary is one crawled document as the dashboard lists it.
type DocumentSummary struct {
	ID                int64  `json:"id"`
	URL               string `json:"url"`
	Title             string `json:"title"`
	KGProcessed       bool   `json:"kg_processed"`
	EntityCount       int    `json:"kg_entity_count"`
	RelationshipCount int    `json:"kg_relationship_count"`
	QueueStatus       string `json:"queue_status,omitempty"`
}

// StoredEntity is one entity row of a document's chunks.
type StoredEntity struct {
	Text       string  `json:"entity_text"`
	Type       string  `json:"entity_type"`
	Confidence float64 `json:"confidence"`
	ChunkRowID int64   `json:"chunk_rowid"`
}

// StoredRelationship is one relationship row of a document.
type StoredRelationship struct {
	Subject    string  `json:"subject_entity"`
	Predicate  string  `json:"predicate"`
	Object     string  `json:"object_entity"`
	Confidence float64 `json:"confidence"`
}

// DocumentDetail is a document with its KG results.
type DocumentDetail struct {
	DocumentSummary
	Chunks        int                  `json:"chunks"`
	Entities      []StoredEntity       `json:"entities"`
	Relationships []StoredRelationship `json:"relationships"`
}

const documentColumns = `c.id, c.url, COALESCE(c.title, ''), COALESCE(c.kg_processed, FALSE), COALESCE(c.kg_entity_count, 0),
	COALESCE(c.kg_relationship_count, 0),
	COALESCE((SELECT q.status FROM kg_processing_queue q WHERE q.content_id = c.id ORDER BY q.id DESC LIMIT 1), '')`

func scanDocument(row interface{ Scan(...any) error }, d *DocumentSummary) error {
	return row.Scan(&d.ID, &d.URL, &d.Title, &d.KGProcessed, &d.EntityCount, &d.RelationshipCount, &d.QueueStatus)
}

// Documents lists up to limit documents, newest first, whose title or URL
// contains search (any, when empty).
func (q *Queue) Documents(ctx context.Context, search string, limit int) ([]DocumentSummary, error) {
	if limit < 1 {
		return nil, &config.FieldError{Field: "limit", Value: strconv.Itoa(limit), Rule: "must be 1 or more"}
	}
	query := "SELECT " + documentColumns + " FROM crawled_content c"
	var args []any
	if search != "" {
		like := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(search) + "%"
		query += ` WHERE c.title LIKE ? ESCAPE '\' OR c.url LIKE ? ESCAPE '\'`
		args = append(args, like, like)
	}
	query += " ORDER BY c.id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := q.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list documents: %w", err)
	}
	defer rows.Close()
	out := []DocumentSummary{}
	for rows.Next() {
		var d DocumentSummary
		if err := scanDocument(rows, &d); err != nil {
			return nil, fmt.Errorf("list documents: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Document returns one document with its entities and relationships.
func (q *Queue) Document(ctx context.Context, id int64) (*DocumentDetail, error) {
	d := &DocumentDetail{Entities: []StoredEntity{}, Relationships: []StoredRelationship{}}
	err := scanDocument(q.db.QueryRowContext(ctx, "SELECT "+documentColumns+" FROM crawled_content c WHERE c.id = ?", id), &d.DocumentSummary)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &config.NotFoundError{Field: "CONTENT_ID", Value: strconv.FormatInt(id, 10), Rule: "no such document"}
	}
	if err != nil {
		return nil, fmt.Errorf("document %d: %w", id, err)
	}
	if err := q.db.QueryRowContext(ctx, "SELECT count(*) FROM content_chunks WHERE content_id = ?", id).Scan(&d.Chunks); err != nil {
		return nil, fmt.Errorf("document %d: %w", id, err)
	}
	rows, err := q.db.QueryContext(ctx, `SELECT entity_text, COALESCE(entity_type_primary, ''), COALESCE(confidence, 0), chunk_rowid
FROM chunk_entities WHERE content_id = ? ORDER BY id LIMIT 1000`, id)
	if err != nil {
		return nil, fmt.Errorf("document %d entities: %w", id, err)
	}
	for rows.Next() {
		var e StoredEntity
		if err := rows.Scan(&e.Text, &e.Type, &e.Confidence, &e.ChunkRowID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("document %d entities: %w", id, err)
		}
		d.Entities = append(d.Entities, e)
	}
	rows.Close()
	rows, err = q.db.QueryContext(ctx, `SELECT subject_entity, predicate, object_entity, COALESCE(confidence, 0)
FROM chunk_relationships WHERE content_id = ? ORDER BY id LIMIT 1000`, id)
	if err != nil {
		return nil, fmt.Errorf("document %d relationships: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r StoredRelationship
		if err := rows.Scan(&r.Subject, &r.Predicate, &r.Object, &r.Confidence); err != nil {
			return nil, fmt.Errorf("document %d relationships: %w", id, err)
		}
		d.Relationships = append(d.Relationships, r)
	}
	return d, rows.Err()
}
