package wfengine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// newEngine opens an engine on a temp file with a virtual clock, started.
func newEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := Open(filepath.Join(t.TempDir(), "wf.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := e.UseVirtualClock(t0); err != nil {
		t.Fatal(err)
	}
	return e
}

func settle(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.Settle(ctx); err != nil {
		t.Fatal(err)
	}
}

type engineCounters struct {
	Outbox struct {
		Ready     int64 `json:"ready"`
		Scheduled int64 `json:"scheduled"`
	} `json:"outbox"`
	Dead   int64 `json:"dead"`
	Engine struct {
		Completed    int64 `json:"completed"`
		Retried      int64 `json:"retried"`
		DeadLettered int64 `json:"dead_lettered"`
		Dispatched   int64 `json:"dispatched"`
	} `json:"engine"`
}

func counters(t *testing.T, e *Engine) engineCounters {
	t.Helper()
	raw, err := e.Stats(nil)
	if err != nil {
		t.Fatal(err)
	}
	var c engineCounters
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadAndVersion(t *testing.T) {
	v, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "0.1.") {
		t.Fatalf("version %q", v)
	}
	if LibraryPath() == "" {
		t.Fatal("no library path")
	}
}

func TestEnqueueCallbackComplete(t *testing.T) {
	e := newEngine(t)
	got := make(chan *Job, 1)
	if err := e.RegisterEffect("email", nil, func(j *Job) {
		go func() { // completion from another goroutine
			got <- j
			if err := j.Complete(map[string]any{"sent": true}); err != nil {
				t.Error(err)
			}
		}()
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := e.Enqueue(context.Background(), JobSpec{Effect: "email", Key: "k1", Payload: map[string]any{"to": "a@b"}})
	if err != nil || id == "" {
		t.Fatal(id, err)
	}
	settle(t, e)
	j := <-got
	if j.ID != id || j.Key != "k1" || j.Attempt != 1 || !strings.Contains(string(j.Payload), "a@b") {
		t.Fatalf("job %+v", j)
	}
	if c := counters(t, e); c.Engine.Completed != 1 {
		t.Fatalf("completed %d", c.Engine.Completed)
	}
	// same key again: ErrExists with the holder's id
	id2, err := e.Enqueue(context.Background(), JobSpec{Effect: "email", Key: "k1"})
	if !errors.Is(err, ErrExists) || id2 != id {
		t.Fatalf("dup: %q %v", id2, err)
	}
	if err := j.Complete(nil); !errors.Is(err, ErrState) {
		t.Fatalf("second completion: %v", err)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	e := newEngine(t)
	var attempts atomic.Int32
	_ = e.RegisterEffect("flaky", nil, func(j *Job) {
		attempts.Add(1)
		if j.Attempt == 1 {
			_ = j.Retry("try later", 10*time.Second)
			return
		}
		_ = j.Complete(nil)
	})
	_ = e.Start()
	if _, err := e.Enqueue(context.Background(), `{"effect":"flaky"}`); err != nil {
		t.Fatal(err)
	}
	settle(t, e)
	if n := attempts.Load(); n != 1 {
		t.Fatalf("attempts before the delay: %d", n)
	}
	if err := e.AdvanceClock(11 * time.Second); err != nil {
		t.Fatal(err)
	}
	settle(t, e)
	c := counters(t, e)
	if attempts.Load() != 2 || c.Engine.Completed != 1 || c.Engine.Retried != 1 {
		t.Fatalf("attempts %d, %+v", attempts.Load(), c.Engine)
	}
}

func TestDeadLetterAndRequeue(t *testing.T) {
	e := newEngine(t)
	var fail atomic.Bool
	fail.Store(true)
	_ = e.RegisterEffect("pay", nil, func(j *Job) {
		if fail.Load() {
			_ = j.Fail("card declined")
		} else {
			_ = j.Complete(nil)
		}
	})
	_ = e.Start()
	id, _ := e.Enqueue(context.Background(), JobSpec{Effect: "pay"})
	settle(t, e)
	dead, err := e.DeadList(map[string]any{"effect": "pay"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dead), id) || !strings.Contains(string(dead), "card declined") {
		t.Fatalf("dead list %s", dead)
	}
	fail.Store(false)
	n, err := e.DeadRequeue(map[string]any{"ids": []string{id}})
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	settle(t, e)
	c := counters(t, e)
	if c.Dead != 0 || c.Engine.Completed != 1 {
		t.Fatalf("%+v", c)
	}
	if n, err := e.DeadPurge(nil); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	m, err := e.Metrics()
	if err != nil || !strings.Contains(m, "wf_") {
		t.Fatalf("metrics: %v", err)
	}
}

func TestHostTransaction(t *testing.T) {
	e := newEngine(t)
	var done atomic.Int32
	_ = e.RegisterEffect("ship", nil, func(j *Job) { done.Add(1); _ = j.Complete(nil) })
	_ = e.Start()

	tx, err := e.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT)", nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// rolled back: neither the row nor the job
	tx, _ = e.Begin()
	if _, err := tx.Exec("INSERT INTO orders(item) VALUES (?)", []any{"lamp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Enqueue(JobSpec{Effect: "ship", Key: "lamp"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	settle(t, e)
	if done.Load() != 0 {
		t.Fatal("rolled-back job ran")
	}

	// committed: both
	func() {
		tx, err := e.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }() // no-op after Commit
		if _, err := tx.Exec("INSERT INTO orders(item) VALUES (?)", []any{"desk"}); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Enqueue(JobSpec{Effect: "ship", Key: "desk"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); !errors.Is(err, ErrState) {
			t.Fatalf("commit twice: %v", err)
		}
	}()
	settle(t, e)
	if done.Load() != 1 {
		t.Fatalf("committed job ran %d times", done.Load())
	}
	tx, _ = e.Begin()
	rows, err := tx.Exec("SELECT item FROM orders", nil)
	_ = tx.Rollback()
	if err != nil || string(rows) != `[{"item":"desk"}]` {
		t.Fatalf("rows %s %v", rows, err)
	}
	// the engine's own tables are refused
	tx, _ = e.Begin()
	_, err = tx.Exec("DELETE FROM wf_jobs", nil)
	_ = tx.Rollback()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("wf_ table write: %v", err)
	}
}

// Goroutines writing while a transaction is open wait behind it; none gets
// ErrBusy because it happened to run on the thread that used the transaction.
func TestWritersDuringTransaction(t *testing.T) {
	e := newEngine(t)
	for round := 0; round < 5; round++ {
		tx, err := e.Begin()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				if _, err := e.Enqueue(context.Background(), JobSpec{Effect: "later", Key: fmt.Sprintf("r%d-g%d", round, g)}); err != nil {
					t.Error(err)
				}
			}(g)
		}
		for i := 0; i < 20; i++ {
			if _, err := tx.Exec("SELECT 1", nil); err != nil {
				t.Fatal(err)
			}
			runtime.Gosched()
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
	if c := counters(t, e); c.Outbox.Ready != 40 {
		t.Fatalf("ready %d", c.Outbox.Ready)
	}
}

func TestSagaWithGoReducer(t *testing.T) {
	e := newEngine(t)
	_ = e.RegisterEffect("charge", nil, func(j *Job) { _ = j.Complete(map[string]any{"receipt": "r-1"}) })
	type input struct {
		State *struct {
			Step string `json:"step"`
		} `json:"state"`
		Event struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		} `json:"event"`
		CorrelationID string `json:"correlation_id"`
	}
	err := e.RegisterSaga("order", map[string]any{"start": []string{"order.placed"}, "on": []string{}, "correlation": "correlation_id"},
		func(raw json.RawMessage) (any, error) {
			var in input
			if err := json.Unmarshal(raw, &in); err != nil {
				return nil, err
			}
			switch in.Event.Type {
			case "order.placed":
				return map[string]any{"state": map[string]any{"step": "charging"},
					"commands": []any{map[string]any{"effect": "charge", "key": "charge:" + in.CorrelationID}}}, nil
			case "charge.completed":
				if !strings.Contains(string(in.Event.Payload), "r-1") {
					return nil, fmt.Errorf("no receipt in %s", in.Event.Payload)
				}
				return map[string]any{"state": map[string]any{"step": "paid"}, "done": true}, nil
			}
			return nil, fmt.Errorf("unexpected %s", in.Event.Type)
		})
	if err != nil {
		t.Fatal(err)
	}
	_ = e.Start()
	if err := e.Submit(map[string]any{"event_id": "o-1:placed", "type": "order.placed", "correlation_id": "o-1"}); err != nil {
		t.Fatal(err)
	}
	settle(t, e)
	st, err := e.SagaGet("", "order", "o-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), `"paid"`) || !strings.Contains(string(st), `"done"`) {
		t.Fatalf("saga state %s", st)
	}
	rp, err := e.SagaReplay("", "order", "o-1", nil)
	if err != nil || !strings.Contains(string(rp), `"paid"`) {
		t.Fatalf("replay %s %v", rp, err)
	}
	if _, err := e.SagaGet("", "order", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing saga: %v", err)
	}
}

func TestScheduleFires(t *testing.T) {
	e := newEngine(t)
	var fired atomic.Int32
	_ = e.RegisterEffect("tick", nil, func(j *Job) { fired.Add(1); _ = j.Complete(nil) })
	_ = e.Start()
	if err := e.Schedule(map[string]any{"key": "t1", "delay_ms": 60000, "job": map[string]any{"effect": "tick"}}); err != nil {
		t.Fatal(err)
	}
	settle(t, e)
	if fired.Load() != 0 {
		t.Fatal("fired early")
	}
	_ = e.AdvanceClock(61 * time.Second)
	settle(t, e)
	if fired.Load() != 1 {
		t.Fatalf("fired %d", fired.Load())
	}
	if err := e.Unschedule("", "t1"); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := e.Unschedule("", "never"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	e := newEngine(t)
	_, err := e.Enqueue(context.Background(), `{"effect":`)
	var we *WfError
	if !errors.As(err, &we) || we.Code != EINVAL || we.Message == "" {
		t.Fatalf("bad json: %v", err)
	}
	_, err = e.Enqueue(context.Background(), map[string]any{"payload": 1})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "effect") {
		t.Fatalf("missing effect: %v", err)
	}
	if _, err := Open(":memory:", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf(":memory: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), `{"no_such_option":1}`); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no_such_option") {
		t.Fatalf("bad option: %v", err)
	}
	if err := e.Cancel("", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel: %v", err)
	}
	if err := e.RegisterBuiltin("x", `{"type":"nope"}`); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("builtin: %v", err)
	}
	if err := e.RegisterEffect("", nil, func(*Job) {}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty effect: %v", err)
	}
	if err := e.EnqueueAsync(context.Background(), `[]`, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("async: %v", err)
	}
	if _, err := e.Stats(`{"colour":1}`); !errors.Is(err, ErrInvalid) {
		t.Fatalf("stats: %v", err)
	}
	// cancel of a waiting job works
	id, _ := e.Enqueue(context.Background(), JobSpec{Effect: "unserved"})
	if err := e.Cancel("", id); err != nil {
		t.Fatal(err)
	}
}

func TestManyGoroutinesWhileCallbacksArrive(t *testing.T) {
	e := newEngine(t)
	var completed atomic.Int64
	_ = e.RegisterEffect("work", map[string]any{"concurrency": 16}, func(j *Job) {
		// Counted before completing: once Complete returns, Settle may see
		// the job done before this goroutine runs again.
		go func() { completed.Add(1); _ = j.Complete(nil) }()
	})
	_ = e.Start()
	const G, N = 8, 40
	var wg sync.WaitGroup
	var asyncOK atomic.Int64
	ctx := context.Background()
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < N; i++ {
				key := fmt.Sprintf("g%d-%d", g, i)
				switch i % 3 {
				case 0:
					if _, err := e.Enqueue(ctx, JobSpec{Effect: "work", Key: key}); err != nil {
						t.Error(err)
					}
				case 1:
					if err := e.EnqueueAsync(ctx, JobSpec{Effect: "work", Key: key}, func(id string, err error) {
						if err == nil && id != "" {
							asyncOK.Add(1)
						}
					}); err != nil {
						t.Error(err)
					}
				case 2:
					r, err := e.EnqueueBatch(ctx, []JobSpec{{Effect: "work", Key: key}})
					if err != nil || len(r) != 1 || r[0].Existing {
						t.Error(r, err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	settle(t, e)
	c := counters(t, e)
	if c.Engine.Completed != G*N || completed.Load() != G*N {
		t.Fatalf("completed %d / %d", c.Engine.Completed, completed.Load())
	}
	want := int64(0)
	for i := 0; i < N; i++ {
		if i%3 == 1 {
			want += G
		}
	}
	if asyncOK.Load() != want {
		t.Fatalf("async callbacks %d want %d", asyncOK.Load(), want)
	}
}

func TestPanickingCallbackBecomesRetry(t *testing.T) {
	e := newEngine(t)
	var attempts atomic.Int32
	_ = e.RegisterEffect("boom", map[string]any{"backoff": map[string]any{"base_ms": 1000, "jitter": "none"}}, func(j *Job) {
		attempts.Add(1)
		if j.Attempt == 1 {
			panic("kaboom")
		}
		_ = j.Complete(nil)
	})
	_ = e.Start()
	id, _ := e.Enqueue(context.Background(), JobSpec{Effect: "boom"})
	settle(t, e)
	_ = e.AdvanceClock(time.Hour)
	settle(t, e)
	c := counters(t, e)
	if attempts.Load() != 2 || c.Engine.Completed != 1 || c.Engine.Retried != 1 {
		t.Fatalf("attempts %d %+v", attempts.Load(), c.Engine)
	}
	_ = id
}

func TestPanicTextIsTheRetryError(t *testing.T) {
	e := newEngine(t)
	_ = e.RegisterEffect("boom", map[string]any{"max_attempts": 1}, func(j *Job) { panic("kaboom-text") })
	_ = e.Start()
	_, _ = e.Enqueue(context.Background(), JobSpec{Effect: "boom"})
	settle(t, e)
	dead, err := e.DeadList(nil)
	if err != nil || !strings.Contains(string(dead), "kaboom-text") {
		t.Fatalf("dead %s %v", dead, err)
	}
}

func TestDroppedHandleBecomesRetry(t *testing.T) {
	e := newEngine(t)
	var attempts atomic.Int32
	done := make(chan struct{})
	_ = e.RegisterEffect("drop", nil, func(j *Job) {
		if attempts.Add(1) == 1 {
			return // dropped: the finalizer retries it
		}
		_ = j.Complete(nil)
		close(done)
	})
	_ = e.Start()
	_, _ = e.Enqueue(context.Background(), JobSpec{Effect: "drop"})
	deadline := time.Now().Add(30 * time.Second)
	for {
		runtime.GC()
		_ = e.AdvanceClock(time.Hour)
		select {
		case <-done:
			return
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dropped handle was not retried (attempts %d)", attempts.Load())
		}
	}
}

func TestLogger(t *testing.T) {
	e := newEngine(t)
	lines := make(chan string, 100)
	if err := e.SetLogger(LogInfo, func(level int, line string) {
		select {
		case lines <- line:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	_ = e.RegisterEffect("x", map[string]any{"max_attempts": 1}, func(j *Job) { _ = j.Fail("logged failure") })
	_ = e.Start()
	_, _ = e.Enqueue(context.Background(), JobSpec{Effect: "x"})
	settle(t, e)
	if err := e.SetLogger(LogInfo, nil); err != nil { // waits for earlier lines
		t.Fatal(err)
	}
	found := false
	for len(lines) > 0 {
		if strings.Contains(<-lines, "logged failure") {
			found = true
		}
	}
	if !found {
		t.Fatal("no log line about the failure")
	}
}

func TestDrainThenClosed(t *testing.T) {
	e := newEngine(t)
	_ = e.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enqueue(ctx, JobSpec{Effect: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after drain: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// Crash test: a child process enqueues jobs and completes some of them, and
// is killed (SIGKILL) mid-run; a restarted engine finishes every job.
func TestCrashRestartNothingLost(t *testing.T) {
	if os.Getenv("WFGO_CRASH_CHILD") != "" {
		crashChild(os.Getenv("WFGO_CRASH_CHILD"))
		return
	}
	db := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRestartNothingLost$")
	cmd.Env = append(os.Environ(), "WFGO_CRASH_CHILD="+db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child prints "ready" once its jobs are durable and some are done.
	sc := bufio.NewScanner(out)
	var said []string
	for sc.Scan() && sc.Text() != "ready" {
		said = append(said, sc.Text())
	}
	if sc.Text() != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not get ready: %q", said)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	e, err := Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	seen := sync.Map{}
	_ = e.RegisterEffect("crash", nil, func(j *Job) { seen.Store(j.Key, true); _ = j.Complete(nil) })
	_ = e.Start()
	settle(t, e)
	raw, _ := e.Stats(nil)
	var s struct {
		Outbox struct{ Ready, Scheduled, Running int64 } `json:"outbox"`
		Dead   int64                                     `json:"dead"`
	}
	_ = json.Unmarshal(raw, &s)
	if s.Outbox.Ready+s.Outbox.Scheduled+s.Outbox.Running != 0 || s.Dead != 0 {
		t.Fatalf("left over after restart: %s", raw)
	}
	n := 0
	seen.Range(func(_, _ any) bool { n++; return true })
	if n == 0 {
		t.Fatal("no job was left for the restarted engine (the kill came too late to test anything)")
	}
}

func crashChild(db string) {
	e, err := Open(db, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var n atomic.Int32
	_ = e.RegisterEffect("crash", map[string]any{"concurrency": 1000}, func(j *Job) {
		if n.Add(1)%2 == 0 {
			_ = j.Complete(nil)
		} // odd ones are held: in flight when the process dies
	})
	jobs := make([]JobSpec, 200)
	for i := range jobs {
		jobs[i] = JobSpec{Effect: "crash", Key: fmt.Sprintf("c%d", i)}
	}
	if _, err := e.EnqueueBatch(context.Background(), jobs); err != nil {
		fmt.Println("enqueue:", err)
		os.Exit(2)
	}
	_ = e.Start()
	for n.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("ready")
	select {} // wait to be killed
}

func TestDefaultLoggerSeesOpen(t *testing.T) {
	lines := make(chan string, 64)
	if err := SetDefaultLogger(LogInfo, func(level int, line string) {
		select {
		case lines <- line:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	e, err := Open(filepath.Join(t.TempDir(), "d.db"), nil)
	if err := SetDefaultLogger(0, nil); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(lines) == 0 { // "what wf_open logs ... is delivered before it returns"
		t.Fatal("no line from open")
	}
}

func TestBuiltinHTTPProviderAndSubmitAsync(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	e := newEngine(t)
	err := e.RegisterBuiltin("hook", map[string]any{"type": "http", "url": srv.URL + "/in",
		"allow_private_networks": true, "max_attempts": 3})
	if errors.Is(err, ErrUnsupported) {
		t.Skip("library built without the HTTP provider")
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = e.Start()
	if _, err := e.Enqueue(context.Background(), JobSpec{Effect: "hook", Payload: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	settle(t, e)
	if c := counters(t, e); c.Engine.Completed != 1 || hits.Load() != 1 {
		t.Fatalf("completed %d, hits %d", c.Engine.Completed, hits.Load())
	}
	got := make(chan error, 2)
	ev := map[string]any{"event_id": "e-1", "type": "nobody.listens"}
	for i := 0; i < 2; i++ {
		if err := e.SubmitAsync(context.Background(), ev, func(id string, err error) { got <- err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrExists) {
		t.Fatalf("second submit: %v", err)
	}
}
