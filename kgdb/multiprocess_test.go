package kgdb_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kato-manager/kato-manager/kgdb"
	"github.com/kato-manager/kato-manager/queue"
)

// Environment of the helper process that TestManyProcessesClaimEachItemOnce
// starts from this test binary.
const (
	helperEnv      = "KGWORKER_TEST_HELPER" // "claim" to act as a claimer
	helperDBEnv    = "KGWORKER_TEST_DB"
	helperOwnerEnv = "KGWORKER_TEST_OWNER"
	helperGoEnv    = "KGWORKER_TEST_GO" // file whose creation starts the claim
)

// TestHelperProcess is not a test: run as a child of
// TestManyProcessesClaimEachItemOnce, it claims and completes items until
// the queue is empty, printing "claimed ID" for each.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "open" {
		openOnGo()
	}
	if os.Getenv(helperEnv) == "hold" {
		holdOne()
	}
	if os.Getenv(helperEnv) != "claim" {
		return
	}
	owner := os.Getenv(helperOwnerEnv)
	ctx := context.Background()
	q, err := kgdb.Open(ctx, os.Getenv(helperDBEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Println("ready")
	for {
		if _, err := os.Stat(os.Getenv(helperGoEnv)); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		items, err := q.ClaimBatch(ctx, owner, 7, time.Minute)
		if err != nil {
			fmt.Fprintf(os.Stderr, "claim: %v\n", err)
			os.Exit(3)
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			res := &kgdb.IngestResult{
				Success: true, EntitiesExtracted: 1, Neo4jDocumentID: owner,
				Entities: []kgdb.Entity{{Text: owner, ChunkAppearances: []kgdb.ChunkAppearance{{VectorRowID: it.ContentID}}}},
			}
			if err := q.Complete(ctx, owner, it.ID, res); err != nil {
				fmt.Fprintf(os.Stderr, "complete %d: %v\n", it.ID, err)
				os.Exit(3)
			}
			fmt.Fprintf(out, "claimed %d\n", it.ID)
		}
	}
	out.Flush()
	q.Close()
	os.Exit(0)
}

// TestManyProcessesClaimEachItemOnce runs several processes claiming from
// one file at the same moment and checks that every item was claimed, and
// its result written, exactly once.
func TestManyProcessesClaimEachItemOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		const (
			procs = 4
			items = 1000
		)
		dir := t.TempDir()
		path := be.Location(t)
		q := openQueueAt(t, path)
		db := rawDB(t, path)
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for c := 1; c <= items; c++ {
			if _, err := tx.Exec("INSERT INTO crawled_content(id, url) VALUES (?, ?)", c, fmt.Sprint("https://example.org/", c)); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("INSERT INTO kg_processing_queue(content_id, status, priority) VALUES (?, 'pending', ?)", c, c%3); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}

		goFile := filepath.Join(dir, "go")
		type child struct {
			owner  string
			cmd    *exec.Cmd
			stdout *bufio.Scanner
			stderr strings.Builder
		}
		children := make([]*child, procs)
		for i := range children {
			c := &child{owner: fmt.Sprintf("proc-%d", i)}
			c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			c.cmd.Env = append(os.Environ(), helperEnv+"=claim", helperDBEnv+"="+path, helperOwnerEnv+"="+c.owner, helperGoEnv+"="+goFile)
			c.cmd.Stderr = &c.stderr
			pipe, err := c.cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			c.stdout = bufio.NewScanner(pipe)
			if err := c.cmd.Start(); err != nil {
				t.Fatalf("start %s: %v", c.owner, err)
			}
			t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
			children[i] = c
		}
		for _, c := range children {
			if !c.stdout.Scan() || c.stdout.Text() != "ready" {
				t.Fatalf("%s did not get ready: %q %s", c.owner, c.stdout.Text(), c.stderr.String())
			}
		}
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}

		claimedBy := make(map[int64][]string)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range children {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c.stdout.Scan() {
					idText, ok := strings.CutPrefix(c.stdout.Text(), "claimed ")
					if !ok {
						continue
					}
					id, err := strconv.ParseInt(idText, 10, 64)
					if err != nil {
						continue
					}
					mu.Lock()
					claimedBy[id] = append(claimedBy[id], c.owner)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		perOwner := map[string]int{}
		for _, c := range children {
			if err := c.cmd.Wait(); err != nil {
				t.Fatalf("%s: %v\n%s", c.owner, err, c.stderr.String())
			}
		}

		for id := int64(1); id <= items; id++ {
			owners := claimedBy[id]
			if len(owners) != 1 {
				t.Errorf("item %d claimed by %v, want exactly one process", id, owners)
				continue
			}
			perOwner[owners[0]]++
		}
		if len(claimedBy) != items {
			t.Errorf("%d distinct items reported, want %d", len(claimedBy), items)
		}
		t.Logf("items per process: %v", perOwner)

		st, err := q.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Completed != items || st.Total != items {
			t.Errorf("queue after the run: %+v, want all %d completed", st, items)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM chunk_entities"); n != items {
			t.Errorf("%d entity rows, want one per item (%d)", n, items)
		}
		if n := queryInt(t, db, "SELECT count(DISTINCT content_id) FROM chunk_entities"); n != items {
			t.Errorf("entity rows cover %d contents, want %d", n, items)
		}
	})
}

// openOnGo is the helper of TestManyProcessesOpenANewDatabase: it waits
// for the go file, opens the database and exits 0, or 3 with the error.
func openOnGo() {
	fmt.Println("ready")
	for {
		if _, err := os.Stat(os.Getenv(helperGoEnv)); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	q, err := kgdb.Open(context.Background(), os.Getenv(helperDBEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	q.Close()
	os.Exit(0)
}

// TestManyProcessesOpenANewDatabase starts 80 processes that open one new
// database at the same moment, as 80 workers and commands started together
// would: every open succeeds.
func TestManyProcessesOpenANewDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 80 processes")
	}
	eachBackend(t, func(t *testing.T, be backend) {
		dir := t.TempDir()
		path := be.Location(t)
		goFile := filepath.Join(dir, "go")
		type child struct {
			cmd    *exec.Cmd
			stderr strings.Builder
		}
		children := make([]*child, 80)
		for i := range children {
			c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")}
			c.cmd.Env = append(os.Environ(), helperEnv+"=open", helperDBEnv+"="+path, helperGoEnv+"="+goFile)
			c.cmd.Stderr = &c.stderr
			out, err := c.cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
				t.Fatalf("child %d: %q %v", i, line, err)
			}
			children[i] = c
		}
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		failed := 0
		for i, c := range children {
			if err := c.cmd.Wait(); err != nil {
				failed++
				t.Errorf("child %d: %v: %s", i, err, c.stderr.String())
			}
		}
		if failed > 0 {
			t.Errorf("%d of 80 simultaneous first opens failed", failed)
		}
		q := openQueueAt(t, path)
		if v, err := q.SchemaVersion(context.Background()); err != nil || v != kgdb.SchemaVersion {
			t.Errorf("schema version after the opens: %d, %v; want %d", v, err, kgdb.SchemaVersion)
		}
	})
}

// holdOne is the helper of TestKilledWorkersItemComesBack: it claims one
// item under a short lease, says which, and waits to be killed.
func holdOne() {
	ctx := context.Background()
	q, err := kgdb.Open(ctx, os.Getenv(helperDBEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(3)
	}
	items, err := q.ClaimBatch(ctx, os.Getenv(helperOwnerEnv), 1, 2*time.Second)
	if err != nil || len(items) != 1 {
		fmt.Fprintf(os.Stderr, "claim: %v %v\n", items, err)
		os.Exit(3)
	}
	fmt.Printf("claimed %d\n", items[0].ID)
	select {}
}

// TestKilledWorkersItemComesBack kills -9 a process holding an item: the
// item stays processing under its lease, nobody else can claim it, and
// once the lease expires it comes back, one attempt spent, to be completed
// by another worker, once.
func TestKilledWorkersItemComesBack(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		path := be.Location(t)
		q := openQueueAt(t, path)
		db := rawDB(t, path)
		addContent(t, db, 1, 1)
		addContent(t, db, 2, 1)
		first := enqueue(t, q, 1, 5)
		second := enqueue(t, q, 2, 1)
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=hold", helperDBEnv+"="+path, helperOwnerEnv+"=doomed")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != fmt.Sprintf("claimed %d\n", first) {
			t.Fatalf("helper: %q %v %s", line, err, stderr.String())
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		ctx := context.Background()
		// While the lease runs, the item is the dead worker's.
		if it := get(t, q, first); it.Status != queue.StatusProcessing || it.LeaseOwner != "doomed" {
			t.Fatalf("after the kill: %+v, want processing under doomed's lease", it)
		}
		if got := ids(claim(t, q, "survivor", 5, time.Minute)); len(got) != 1 || got[0] != second {
			t.Fatalf("survivor claimed %v during the lease, want only %d", got, second)
		}
		waitFor(t, 10*time.Second, "the dead worker's lease to be reclaimed", func() bool {
			n, err := q.ReclaimExpired(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return n == 1
		})
		it := get(t, q, first)
		if it.Status != queue.StatusPending || it.RetryCount != 1 || it.LeaseOwner != "" || !strings.Contains(it.ErrorMessage, "lease of doomed expired") {
			t.Fatalf("reclaimed item %+v, want pending after one attempt", it)
		}
		// Due after its backoff; the test's queue backs off 10s by
		// default, so make it due now as the clock would.
		mustExec(t, db, "UPDATE kg_processing_queue SET next_attempt_at = NULL WHERE id = ?", first)
		got := claim(t, q, "survivor", 5, time.Minute)
		if len(got) != 1 || got[0].ID != first {
			t.Fatalf("survivor claimed %v after the reclaim, want %d", ids(got), first)
		}
		res := &kgdb.IngestResult{Success: true, Neo4jDocumentID: "d"}
		if err := q.Complete(ctx, "survivor", first, res); err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM kg_processing_queue WHERE status = 'completed' AND id = ?", first); n != 1 {
			t.Errorf("%d completed rows for the item, want 1", n)
		}
	})
}
