package kgworker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/kato-manager/kato-manager/kgdb"
)

// The decoder before the one-pass decodeResult: the answer read token by
// token with encoding/json, each entity and relationship decoded whole and
// decoded again by its UnmarshalJSON. It is kept here as the reference the
// one-pass decoder must agree with.

type oldAnswerReader struct {
	sizeLimit
	dec *json.Decoder
}

func (a *oldAnswerReader) nextValue() { a.n = MaxValueBytes }

type oldEntity kgdb.Entity

func (e *oldEntity) UnmarshalJSON(data []byte) error {
	type plain kgdb.Entity
	var w struct {
		plain
		Text             *string          `json:"text"`
		Normalized       *string          `json:"normalized"`
		TypePrimary      *string          `json:"type_primary"`
		Confidence       *float64         `json:"confidence"`
		ChunkAppearances *[]oldAppearance `json:"chunk_appearances"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if w.Text == nil || w.Normalized == nil || w.TypePrimary == nil || w.Confidence == nil || w.ChunkAppearances == nil {
		return errors.New("entity lacks a field")
	}
	*e = oldEntity(w.plain)
	e.Text, e.Normalized, e.TypePrimary, e.Confidence = *w.Text, *w.Normalized, *w.TypePrimary, *w.Confidence
	e.ChunkAppearances = make([]kgdb.ChunkAppearance, len(*w.ChunkAppearances))
	if *w.ChunkAppearances == nil {
		e.ChunkAppearances = nil
	}
	for i, a := range *w.ChunkAppearances {
		e.ChunkAppearances[i] = kgdb.ChunkAppearance(a)
	}
	return nil
}

type oldRelationship kgdb.Relationship

func (r *oldRelationship) UnmarshalJSON(data []byte) error {
	type plain kgdb.Relationship
	var w struct {
		plain
		SubjectText *string  `json:"subject_text"`
		Predicate   *string  `json:"predicate"`
		ObjectText  *string  `json:"object_text"`
		Confidence  *float64 `json:"confidence"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if w.SubjectText == nil || w.Predicate == nil || w.ObjectText == nil || w.Confidence == nil {
		return errors.New("relationship lacks a field")
	}
	*r = oldRelationship(w.plain)
	r.SubjectText, r.Predicate, r.ObjectText, r.Confidence = *w.SubjectText, *w.Predicate, *w.ObjectText, *w.Confidence
	return nil
}

type oldAppearance kgdb.ChunkAppearance

func (a *oldAppearance) UnmarshalJSON(data []byte) error {
	var w struct {
		VectorRowID *int64 `json:"vector_rowid"`
		ChunkIndex  *int   `json:"chunk_index"`
		OffsetStart *int   `json:"offset_start"`
		OffsetEnd   *int   `json:"offset_end"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if w.VectorRowID == nil || w.ChunkIndex == nil || w.OffsetStart == nil || w.OffsetEnd == nil {
		return errors.New("chunk appearance lacks a field")
	}
	*a = oldAppearance{VectorRowID: *w.VectorRowID, ChunkIndex: *w.ChunkIndex, OffsetStart: *w.OffsetStart, OffsetEnd: *w.OffsetEnd}
	return nil
}

// oldDecodeResult is the decoder before the one-pass decodeResult, kept as
// the reference decodeResult must agree with. It reads a success answer from body as it arrives: the top-level
// object field by field and the entity and relationship lists one element at
// a time, so that no copy of the whole answer is ever held. It insists on
// every field of the success model; the checks against the request are in
// checkResult.
func oldDecodeResult(body io.Reader) (*kgdb.IngestResult, error) {
	ar := &oldAnswerReader{sizeLimit: sizeLimit{r: body, err: errValueTooLarge}}
	dec := json.NewDecoder(ar)
	ar.dec = dec
	ar.nextValue()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var (
		r    kgdb.IngestResult
		seen = map[string]bool{}
		sum  json.RawMessage
	)
	for dec.More() {
		ar.nextValue()
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		ar.nextValue()
		var target any
		switch key {
		case "success":
			target = &r.Success
		case "content_id":
			target = &r.ContentID
		case "neo4j_document_id":
			target = &r.Neo4jDocumentID
		case "entities_extracted":
			target = &r.EntitiesExtracted
		case "relationships_extracted":
			target = &r.RelationshipsExtracted
		case "processing_time_ms":
			target = &r.ProcessingTimeMS
		case "summary":
			target = &sum
		case "entities":
			var es []oldEntity
			es, err = oldDecodeList[oldEntity](ar, key)
			if es != nil {
				r.Entities = make([]kgdb.Entity, len(es))
				for i, e := range es {
					r.Entities[i] = kgdb.Entity(e)
				}
			}
		case "relationships":
			var rs []oldRelationship
			rs, err = oldDecodeList[oldRelationship](ar, key)
			if rs != nil {
				r.Relationships = make([]kgdb.Relationship, len(rs))
				for i, x := range rs {
					r.Relationships[i] = kgdb.Relationship(x)
				}
			}
		default:
			var skip json.RawMessage
			target = &skip
		}
		if target != nil {
			if err := dec.Decode(target); err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
		}
		if err != nil {
			return nil, err
		}
		seen[key] = true
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if !seen["success"] {
		return nil, errors.New("answer lacks success")
	}
	if !r.Success {
		return nil, errors.New("answer reports success false")
	}
	var lacking []string
	for _, f := range []string{"content_id", "neo4j_document_id", "entities_extracted", "relationships_extracted",
		"processing_time_ms", "entities", "relationships", "summary"} {
		if !seen[f] {
			lacking = append(lacking, f)
		}
	}
	if len(lacking) > 0 {
		return nil, fmt.Errorf("answer lacks %s", strings.Join(lacking, ", "))
	}
	var s kgdb.Summary
	if err := json.Unmarshal(sum, &s); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	if s.EntitiesByType == nil || s.RelationshipsByPredicate == nil {
		return nil, errors.New("summary lacks entities_by_type or relationships_by_predicate")
	}
	r.Summary = sum
	if r.Entities == nil || r.Relationships == nil {
		return nil, errors.New("answer has null entities or relationships")
	}
	return &r, nil
}

// oldDecodeList decodes a JSON array one element at a time.
func oldDecodeList[T any](ar *oldAnswerReader, key string) ([]T, error) {
	dec := ar.dec
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("%s: want an array, got %v", key, tok)
	}
	out := []T{}
	for i := 0; dec.More(); i++ {
		ar.nextValue()
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return out, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}

// answerBody is a whole answer, as the service gives it.
const answerBody = `{"success":true,"content_id":7,"neo4j_document_id":"doc-7","entities_extracted":1,"relationships_extracted":1,
"processing_time_ms":12.5,
"entities":[{"text":"Go","normalized":"go","type_primary":"Technology","type_sub1":null,"type_sub2":null,"type_sub3":null,
 "type_full":"Technology","confidence":0.9,"neo4j_node_id":"n1","context_before":"","context_after":" is fast","sentence":"Go is fast",
 "chunk_appearances":[{"vector_rowid":700,"chunk_index":0,"offset_start":0,"offset_end":2}],"spans_multiple_chunks":false}],
"relationships":[{"subject_text":"Go","predicate":"is","object_text":"fast","subject_neo4j_id":"n1","object_neo4j_id":null,
 "confidence":0.5,"context":"Go is fast","neo4j_relationship_id":"r1","spans_chunks":true,"chunk_rowids":[700,701]}],
"summary":{"entities_by_type":{"Technology":1},"relationships_by_predicate":{"is":1},"chunks_with_entities":1,"avg_entities_per_chunk":1.0}}`

// answerSeeds are answers the decoders must agree on: the test answer, and
// edits of it that break the contract or bend JSON.
func answerSeeds() []string {
	seeds := []string{answerBody, `{"success":true}`, `null`, `[]`, `{}`, `{"success":false}`, `{"success":null}`}
	for _, e := range [][2]string{
		{`"content_id":7`, `"content_id":null`},
		{`"content_id":7`, `"content_id":"7"`},
		{`"content_id":7`, `"CONTENT_ID":7`},
		{`"content_id":7`, `"content_id":7,"content_id":8`},
		{`"entities_extracted":1`, `"entities_extracted":null`},
		{`"processing_time_ms":12.5`, `"processing_time_ms":null`},
		{`"neo4j_document_id":"doc-7"`, `"neo4j_document_id":null`},
		{`"success":true`, `"success":true,"success":null`},
		{`"text":"Go"`, `"text":null`},
		{`"text":"Go",`, ``},
		{`"chunk_appearances":[{"vector_rowid":700,"chunk_index":0,"offset_start":0,"offset_end":2}]`, `"chunk_appearances":null`},
		{`"chunk_appearances":[{"vector_rowid":700,"chunk_index":0,"offset_start":0,"offset_end":2}]`, `"chunk_appearances":[]`},
		{`"chunk_appearances":[{"vector_rowid":700,"chunk_index":0,"offset_start":0,"offset_end":2}]`, `"chunk_appearances":[null]`},
		{`"offset_end":2`, `"offset_end":null`},
		{`"entities":[`, `"entities":[null,`},
		{`"entities":[`, `"extra":{"a":[1,2,{"b":null}]},"entities":[`},
		{`"type_sub1":null`, `"type_sub1":"Language"`},
		{`"confidence":0.9`, `"confidence":"0.9"`},
		{`"confidence":0.9`, `"Confidence":0.9`},
		{`"sentence":"Go is fast"`, `"sentence":"Go \u00e9 \ud800 fast"`},
		{`"sentence":"Go is fast"`, "\"sentence\":\"Go \xff fast\""},
		{`"predicate":"is"`, `"predicate":1`},
		{`"chunk_rowids":[700,701]`, `"chunk_rowids":null`},
		{`"chunk_rowids":[700,701]`, `"chunk_rowids":[700.5]`},
		{`"entities_by_type":{"Technology":1}`, `"entities_by_type":null`},
		{`"summary":{`, `"summary":null,"summary2":{`},
	} {
		if !strings.Contains(answerBody, e[0]) {
			panic("seed edit " + e[0] + " does not apply")
		}
		seeds = append(seeds, strings.Replace(answerBody, e[0], e[1], 1))
	}
	return append(seeds, answerBody[:len(answerBody)/2], answerBody+"garbage", strings.ReplaceAll(answerBody, "\n", " "))
}

// FuzzDecodeResultAgreesWithTheOldDecoder holds the one-pass decoder to the
// decoder it replaced: an answer one refuses the other refuses, and an
// answer both take decodes to the same result.
func FuzzDecodeResultAgreesWithTheOldDecoder(f *testing.F) {
	for _, s := range answerSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wantErr := oldDecodeResult(bytes.NewReader(body))
		got, err := decodeResult(bytes.NewReader(body))
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("answer %q: one-pass decoder: %v; old decoder: %v", body, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("answer %q:\none-pass decoder: %+v\nold decoder:      %+v", body, got, want)
		}
	})
}

// TestDecodeResultAgreesWithTheOldDecoder runs the fuzz test's seeds in
// the ordinary test run, each checked to be taken or refused as expected.
func TestDecodeResultAgreesWithTheOldDecoder(t *testing.T) {
	for _, s := range answerSeeds() {
		want, wantErr := oldDecodeResult(strings.NewReader(s))
		got, err := decodeResult(strings.NewReader(s))
		if (err == nil) != (wantErr == nil) {
			t.Errorf("answer %q: one-pass decoder: %v; old decoder: %v", s, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("answer %q:\none-pass decoder: %+v\nold decoder:      %+v", s, got, want)
		}
	}
}

// BenchmarkDecodeResult decodes the test answer with the one-pass decoder
// and with the old one.
func BenchmarkDecodeResult(b *testing.B) {
	for _, d := range []struct {
		name   string
		decode func(io.Reader) (*kgdb.IngestResult, error)
	}{{"one-pass", decodeResult}, {"old", oldDecodeResult}} {
		b.Run(d.name, func(b *testing.B) {
			body := manyEntities(30)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.decode(strings.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestValueLimitBoundsWhatTheDecoderHolds checks the one-pass decoder's
// bound on what it holds at once: a string larger than MaxValueBytes, or a
// summary (read whole), is refused with errValueTooLarge, a string just
// under it is taken, and so is an entity larger than MaxValueBytes made of
// smaller strings, which the decoder no longer holds whole (the old
// decoder refused it).
func TestValueLimitBoundsWhatTheDecoderHolds(t *testing.T) {
	pad := func(n int) string { return strings.Repeat("a", n) }
	sentence := `"sentence":"Go is fast"`
	for _, tc := range []struct {
		name    string
		answer  string
		tooLong bool
	}{
		{"a string over the bound", strings.Replace(answerBody, sentence, `"sentence":"`+pad(MaxValueBytes+1)+`"`, 1), true},
		{"a string under the bound", strings.Replace(answerBody, sentence, `"sentence":"`+pad(MaxValueBytes-64<<10)+`"`, 1), false},
		{"an entity over the bound, of strings under it", strings.Replace(answerBody, sentence,
			`"sentence":"`+pad(MaxValueBytes/2)+`","context_before":"`+pad(MaxValueBytes/2)+`","context_after":"`+pad(MaxValueBytes/2)+`"`, 1), false},
		{"a summary over the bound", strings.Replace(answerBody, `"chunks_with_entities":1`, `"chunks_with_entities":1,"note":"`+pad(MaxValueBytes)+`"`, 1), true},
		{"an unknown field over the bound", strings.Replace(answerBody, `"entities":[`, `"extra":["`+pad(MaxValueBytes/2)+`","`+pad(MaxValueBytes/2)+`"],"entities":[`, 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeResult(strings.NewReader(tc.answer))
			switch {
			case tc.tooLong && !errors.Is(err, errValueTooLarge):
				t.Errorf("got %v, want %v", err, errValueTooLarge)
			case !tc.tooLong && err != nil:
				t.Errorf("got %v, want the answer taken", err)
			}
		})
	}
}

// manyEntities is the test answer with n copies of its entity.
func manyEntities(n int) string {
	a := strings.Index(answerBody, `{"text"`)
	b := strings.Index(answerBody, `"spans_multiple_chunks":false}`) + len(`"spans_multiple_chunks":false}`)
	entity := answerBody[a:b]
	list := strings.TrimSuffix(strings.Repeat(entity+",", n), ",")
	body := strings.Replace(answerBody, entity, list, 1)
	return strings.Replace(body, `"entities_extracted":1`, fmt.Sprintf(`"entities_extracted":%d`, n), 1)
}

// TestDecodeResultReadsTheAnswerOnce holds the one-pass decoder to fewer
// allocations than the old one, which decoded each entity, relationship
// and appearance twice: an answer of 30 entities, as a document of a few
// chunks gets.
func TestDecodeResultReadsTheAnswerOnce(t *testing.T) {
	body := manyEntities(30)
	count := func(decode func(io.Reader) (*kgdb.IngestResult, error)) float64 {
		return testing.AllocsPerRun(50, func() {
			if _, err := decode(strings.NewReader(body)); err != nil {
				t.Fatal(err)
			}
		})
	}
	got, old := count(decodeResult), count(oldDecodeResult)
	t.Logf("allocations per decode: %.0f, the old decoder %.0f", got, old)
	if got > old*0.8 {
		t.Errorf("the one-pass decoder makes %.0f allocations per answer of 30 entities, want at most 0.8 of the old decoder's %.0f", got, old)
	}
}

// TestCheckResultKnowsTheRequestsChunks checks an answer's chunk rowids
// against a short request (looked through) and a long one (a set).
func TestCheckResultKnowsTheRequestsChunks(t *testing.T) {
	for _, n := range []int{3, 16, 17, 1000} {
		req := &kgdb.IngestRequest{ContentID: 7}
		for i := range n {
			req.Chunks = append(req.Chunks, kgdb.Chunk{VectorRowID: int64(1000 + 2*i), ChunkIndex: i})
		}
		last := int64(1000 + 2*(n-1))
		for _, tc := range []struct {
			rowid int64
			ok    bool
		}{{1000, true}, {last, true}, {1001, false}, {last + 2, false}} {
			res := &kgdb.IngestResult{ContentID: 7, Neo4jDocumentID: "d", EntitiesExtracted: 1, RelationshipsExtracted: 1,
				Entities:      []kgdb.Entity{{Confidence: 0.5, ChunkAppearances: []kgdb.ChunkAppearance{{VectorRowID: tc.rowid, OffsetEnd: 1}}}},
				Relationships: []kgdb.Relationship{{Confidence: 0.5, ChunkRowIDs: []int64{tc.rowid}}}}
			err := checkResult(res, req)
			if (err == nil) != tc.ok {
				t.Errorf("%d chunks, rowid %d: got %v, want taken %v", n, tc.rowid, err, tc.ok)
			}
		}
	}
}
