package kgworker_test

import (
	"context"
	"errors"
	"testing"

	"github.com/kato-manager/kato-manager/config"
)

// TestDocuments: search matches title or URL (with LIKE's wildcards taken
// literally), and the detail view has the document's chunks, entities,
// relationships and latest queue status; an unknown id is an input error.
func TestDocuments(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		q, path := openQueue(t, be)
		db := rawDB(t, path)
		addContent(t, db, 1, 2)
		addContent(t, db, 2, 1)
		addContent(t, db, 3, 1)
		mustExec(t, db, "UPDATE crawled_content SET title = 'Cost 100% off_sale' WHERE id = 3")
		mustExec(t, db, `INSERT INTO chunk_entities(chunk_rowid, content_id, entity_text, entity_type_primary, confidence) VALUES (100, 1, 'Alice', 'PERSON', 0.9), (101, 1, 'Paris', 'PLACE', 0.8)`)
		mustExec(t, db, `INSERT INTO chunk_relationships(content_id, subject_entity, predicate, object_entity, confidence) VALUES (1, 'Alice', 'lives_in', 'Paris', 0.7)`)
		enqueue(t, q, 1, 1)

		all, err := q.Documents(ctx, "", 10)
		if err != nil || len(all) != 3 || all[0].ID != 3 {
			t.Fatalf("all documents: %+v %v", all, err)
		}
		if got, _ := q.Documents(ctx, "Page 2", 10); len(got) != 1 || got[0].ID != 2 {
			t.Errorf("search Page 2: %+v", got)
		}
		if got, _ := q.Documents(ctx, "example.org/1", 10); len(got) != 1 || got[0].ID != 1 || got[0].QueueStatus != "pending" {
			t.Errorf("search by URL: %+v", got)
		}
		if got, _ := q.Documents(ctx, "100%", 10); len(got) != 1 || got[0].ID != 3 {
			t.Errorf("search 100%%: %+v", got)
		}
		if got, _ := q.Documents(ctx, "0_s", 10); len(got) != 0 {
			t.Errorf("_ matched any character: %+v", got)
		}
		d, err := q.Document(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if d.Title != "Page 1" || d.Chunks != 2 || len(d.Entities) != 2 || d.Entities[0].Text != "Alice" || d.Entities[0].Type != "PERSON" ||
			len(d.Relationships) != 1 || d.Relationships[0].Predicate != "lives_in" || d.Relationships[0].Object != "Paris" || d.QueueStatus != "pending" {
			t.Errorf("document 1: %+v", d)
		}
		var nf *config.NotFoundError
		if _, err := q.Document(ctx, 99); !errors.As(err, &nf) || nf.Value != "99" || err.Error() != "invalid CONTENT_ID 99: no such document" {
			t.Errorf("unknown document: %v", err)
		}
		var ie *config.FieldError
		if _, err := q.Documents(ctx, "", 0); !errors.As(err, &ie) {
			t.Errorf("limit 0: %v", err)
		}
	})
}
