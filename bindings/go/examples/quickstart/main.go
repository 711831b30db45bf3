// Command quickstart is a complete wfengine program in Go: it opens an
// engine on a database file, serves the "email" effect with a Go callback
// that completes jobs from a goroutine, enqueues a few jobs (one inside a
// host transaction with the host's own row), waits until they are done,
// prints the statistics and looks at the result through the read API.
//
//	WFENGINE_LIBRARY=$PWD/build/libwfengine.so go run ./bindings/go/examples/quickstart [db]
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	wfengine "github.com/wfengine/wfengine/bindings/go"
)

func main() {
	dir, err := os.MkdirTemp("", "wfgo-quickstart")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.db")
	if len(os.Args) > 1 {
		path = os.Args[1]
	}

	eng, err := wfengine.Open(path, map[string]any{"drain_timeout_ms": 5000})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()

	var wg sync.WaitGroup
	wg.Add(3)
	// The callback runs on the engine's thread: hand the work to a goroutine.
	err = eng.RegisterEffect("email", map[string]any{"max_attempts": 5}, func(j *wfengine.Job) {
		go func() {
			defer wg.Done()
			var p struct {
				To string `json:"to"`
			}
			if err := json.Unmarshal(j.Payload, &p); err != nil {
				_ = j.Fail("bad payload: " + err.Error())
				return
			}
			fmt.Printf("sending mail to %s (job %s, attempt %d)\n", p.To, j.ID, j.Attempt)
			_ = j.Complete(map[string]any{"message_id": "m-" + j.ID})
		}()
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, to := range []string{"ada@example.com", "bob@example.com"} {
		if _, err := eng.Enqueue(ctx, wfengine.JobSpec{Effect: "email", Key: "welcome:" + to,
			Payload: map[string]any{"to": to}}); err != nil {
			log.Fatal(err)
		}
	}

	// The host's own write and the job commit together or not at all.
	tx, err := eng.Begin()
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() // no-op after Commit
	if _, err := tx.Exec("CREATE TABLE IF NOT EXISTS users(email TEXT PRIMARY KEY)", nil); err != nil {
		log.Fatal(err)
	}
	if _, err := tx.Exec("INSERT OR IGNORE INTO users VALUES (?)", []any{"cy@example.com"}); err != nil {
		log.Fatal(err)
	}
	if _, err := tx.Enqueue(wfengine.JobSpec{Effect: "email", Key: "welcome:cy@example.com",
		Payload: map[string]any{"to": "cy@example.com"}}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	wg.Wait()
	if err := eng.Sync(ctx); err != nil { // outcomes are committed
		log.Fatal(err)
	}
	stats, err := eng.Stats(nil)
	if err != nil {
		log.Fatal(err)
	}
	var s struct {
		Engine struct {
			Completed int `json:"completed"`
		} `json:"engine"`
	}
	_ = json.Unmarshal(stats, &s)
	fmt.Printf("completed %d jobs\n", s.Engine.Completed)

	// The read API: a completed job is still known by its key, nothing is
	// left in the queue, and the file is consistent.
	job, err := eng.JobGet(ctx, "", "welcome:ada@example.com")
	if err != nil {
		log.Fatal(err)
	}
	left, err := eng.JobsList(ctx, map[string]any{"effect": "email"})
	if err != nil {
		log.Fatal(err)
	}
	check, err := eng.Check(ctx, map[string]any{"quick": true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("job %s (key %s) is %s; %d email jobs left; check ok: %v\n",
		job.ID, job.Key, job.State, len(left.Jobs), check.OK)
	if err := eng.Drain(ctx); err != nil {
		log.Fatal(err)
	}
}
