package wfengine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func jobIDs(jobs []JobInfo) []string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

// The jobs listing with every filter, paging across two pages, EachJob and
// JobGet by id, by key and for a completed job.
func TestReadJobs(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	_ = e.RegisterEffect("pay", map[string]any{"max_attempts": 1}, func(j *Job) { _ = j.Fail("card declined") })
	_ = e.RegisterEffect("ok", nil, func(j *Job) { _ = j.Complete(nil) })
	held := make(chan *Job, 1)
	_ = e.RegisterEffect("hold", nil, func(j *Job) { held <- j })
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	// ready: 3 "email" in tenant a, 2 "sms" in tenant b (nobody serves them)
	var emailIDs []string
	for i := 0; i < 3; i++ {
		id, err := e.Enqueue(ctx, JobSpec{Effect: "email", Tenant: "a", Key: fmt.Sprintf("e%d", i),
			Payload: map[string]any{"n": i}})
		if err != nil {
			t.Fatal(err)
		}
		emailIDs = append(emailIDs, id)
	}
	smsIDs := []string{}
	for i := 0; i < 2; i++ {
		id, _ := e.Enqueue(ctx, JobSpec{Effect: "sms", Tenant: "b", Key: fmt.Sprintf("s%d", i)})
		smsIDs = append(smsIDs, id)
	}
	later, _ := e.Enqueue(ctx, JobSpec{Effect: "email", Tenant: "a", Key: "later", DelayMs: 60000})
	deadID, _ := e.Enqueue(ctx, JobSpec{Effect: "pay", Key: "p1", Payload: map[string]any{"eur": 5}})
	okID, _ := e.Enqueue(ctx, JobSpec{Effect: "ok", Key: "done1"})
	settle(t, e)
	runID, _ := e.Enqueue(ctx, JobSpec{Effect: "hold", Key: "h1"})
	j := <-held // claimed: its lease is committed before the callback runs
	defer func() { _ = j.Complete(nil) }()

	all, err := e.JobsList(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Jobs) != 7 || all.NextCursor != "" || !all.Now.Time().Equal(e.Now()) {
		t.Fatalf("all: %d jobs, cursor %q, now %v: %+v", len(all.Jobs), all.NextCursor, all.Now.Time(), all)
	}
	byID := map[string]JobInfo{}
	for _, j := range all.Jobs {
		byID[j.ID] = j
	}
	if j := byID[emailIDs[1]]; j.State != "ready" || j.Tenant != "a" || j.Effect != "email" || j.Key != "e1" ||
		string(j.Payload) != `{"n":1}` || j.CreatedAt == 0 || j.RunAt == 0 {
		t.Fatalf("email job %+v", j)
	}
	if j := byID[later]; j.State != "scheduled" || j.RunAt.Time().Sub(e.Now()) < 59*time.Second {
		t.Fatalf("scheduled job %+v", j)
	}
	if j := byID[runID]; j.State != "running" || j.LeaseOwner == "" || j.LeaseUntil == 0 || j.Attempts != 1 {
		t.Fatalf("running job %+v", j)
	}
	if _, ok := byID[deadID]; ok {
		t.Fatal("a dead letter in the live listing")
	}

	list := func(filter any) []JobInfo {
		t.Helper()
		p, err := e.JobsList(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		return p.Jobs
	}
	if got := jobIDs(list(map[string]any{"state": "ready", "tenant": "a"})); strings.Join(got, ",") != strings.Join(emailIDs, ",") {
		t.Fatalf("ready in a: %v want %v", got, emailIDs)
	}
	if got := list(map[string]any{"state": "scheduled"}); len(got) != 1 || got[0].ID != later {
		t.Fatalf("scheduled: %+v", got)
	}
	if got := list(`{"state":"running"}`); len(got) != 1 || got[0].ID != runID {
		t.Fatalf("running: %+v", got)
	}
	if got := list(map[string]any{"state": "pending", "tenant": "a"}); len(got) != 4 {
		t.Fatalf("pending in a: %+v", got)
	}
	if got := list(map[string]any{"effect": "sms"}); strings.Join(jobIDs(got), ",") != strings.Join(smsIDs, ",") {
		t.Fatalf("sms: %+v", got)
	}
	if got := list(map[string]any{"tenant": "b", "key": "s1"}); len(got) != 1 || got[0].ID != smsIDs[1] {
		t.Fatalf("key s1: %+v", got)
	}
	dead := list(map[string]any{"state": "dead"})
	if len(dead) != 1 || dead[0].ID != deadID || dead[0].State != "dead" || dead[0].Reason != "card declined" ||
		dead[0].DeadAt == 0 || string(dead[0].Payload) != `{"eur":5}` {
		t.Fatalf("dead: %+v", dead)
	}

	// Two pages of 4 and 3, no overlap, together the whole listing.
	p1, err := e.JobsList(ctx, map[string]any{"limit": 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.Jobs) != 4 || p1.NextCursor == "" {
		t.Fatalf("page 1: %d jobs, cursor %q", len(p1.Jobs), p1.NextCursor)
	}
	p2, err := e.JobsList(ctx, map[string]any{"limit": 4, "cursor": p1.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Jobs) != 3 || p2.NextCursor != "" {
		t.Fatalf("page 2: %d jobs, cursor %q", len(p2.Jobs), p2.NextCursor)
	}
	if got, want := strings.Join(append(jobIDs(p1.Jobs), jobIDs(p2.Jobs)...), ","), strings.Join(jobIDs(all.Jobs), ","); got != want {
		t.Fatalf("pages %s, all %s", got, want)
	}
	var each []string
	if err := e.EachJob(ctx, `{"limit": 2}`, func(j JobInfo) error { each = append(each, j.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(each, ",") != strings.Join(jobIDs(all.Jobs), ",") {
		t.Fatalf("EachJob %v", each)
	}
	stop := errors.New("stop")
	n := 0
	if err := e.EachJob(ctx, map[string]any{"limit": 1}, func(JobInfo) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("stop early: %v after %d", err, n)
	}

	// One job: by id, by key in its tenant, in any tenant, dead, completed.
	g, err := e.JobGet(ctx, "a", emailIDs[0])
	if err != nil || g.Key != "e0" || g.State != "ready" {
		t.Fatalf("get by id: %+v %v", g, err)
	}
	g, err = e.JobGet(ctx, "b", "s0")
	if err != nil || g.ID != smsIDs[0] {
		t.Fatalf("get by key: %+v %v", g, err)
	}
	g, err = e.JobGetAnyTenant(ctx, smsIDs[1])
	if err != nil || g.Tenant != "b" {
		t.Fatalf("get in any tenant: %+v %v", g, err)
	}
	g, err = e.JobGet(ctx, "", "p1")
	if err != nil || g.State != "dead" || len(g.History) != 1 || g.History[0].Error != "card declined" {
		t.Fatalf("get dead: %+v %v", g, err)
	}
	g, err = e.JobGet(ctx, "", "done1")
	if err != nil || g.State != "completed" || g.ID != okID || g.KeyExpiresAt == 0 {
		t.Fatalf("get completed: %+v %v", g, err)
	}
	if _, err := e.JobGet(ctx, "a", "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("missing job: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.JobsList(cctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
}

func TestReadSchedulesSagasEvents(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	_ = e.RegisterEffect("charge", nil, func(j *Job) { _ = j.Complete(map[string]any{"receipt": "r"}) })
	err := e.RegisterSaga("order", map[string]any{"start": []string{"order.placed"}, "correlation": "correlation_id"},
		func(raw json.RawMessage) (any, error) {
			var in struct {
				Event struct {
					Type string `json:"type"`
				} `json:"event"`
				CorrelationID string `json:"correlation_id"`
			}
			_ = json.Unmarshal(raw, &in)
			if in.Event.Type == "order.placed" {
				return map[string]any{"state": map[string]any{"step": "charging"},
					"commands": []any{map[string]any{"effect": "charge", "key": "charge:" + in.CorrelationID}}}, nil
			}
			return map[string]any{"state": map[string]any{"step": "paid"}, "done": true}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	_ = e.Start()
	for i := 0; i < 3; i++ {
		if err := e.Schedule(map[string]any{"key": fmt.Sprintf("t%d", i), "cron": "0 * * * *",
			"job": map[string]any{"effect": "tick"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"o-1", "o-2"} {
		if err := e.Submit(map[string]any{"event_id": c + ":placed", "type": "order.placed", "correlation_id": c}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Submit(map[string]any{"event_id": "x", "type": "nobody.listens"}); err != nil {
		t.Fatal(err)
	}
	settle(t, e)

	sp, err := e.SchedulesList(ctx, map[string]any{"limit": 2})
	if err != nil || len(sp.Schedules) != 2 || sp.NextCursor == "" || sp.Now == 0 {
		t.Fatalf("schedules page 1: %+v %v", sp, err)
	}
	s := sp.Schedules[0]
	if s.Key != "t0" || s.Cron != "0 * * * *" || s.Target != "job" || !strings.Contains(string(s.Job), "tick") ||
		s.Status != "active" || s.NextDue.Time().Before(e.Now()) {
		t.Fatalf("schedule %+v", s)
	}
	sp2, err := e.SchedulesList(ctx, map[string]any{"limit": 2, "cursor": sp.NextCursor})
	if err != nil || len(sp2.Schedules) != 1 || sp2.Schedules[0].Key != "t2" || sp2.NextCursor != "" {
		t.Fatalf("schedules page 2: %+v %v", sp2, err)
	}
	if sp, err := e.SchedulesList(ctx, map[string]any{"key": "t1"}); err != nil || len(sp.Schedules) != 1 {
		t.Fatalf("schedule t1: %+v %v", sp, err)
	}
	var keys []string
	if err := e.EachSchedule(ctx, map[string]any{"limit": 1}, func(s ScheduleInfo) error { keys = append(keys, s.Key); return nil }); err != nil || len(keys) != 3 {
		t.Fatalf("EachSchedule %v %v", keys, err)
	}

	sg, err := e.SagasList(ctx, map[string]any{"saga": "order", "status": "done"})
	if err != nil || len(sg.Sagas) != 2 || sg.Sagas[0].CorrelationID != "o-1" || sg.Sagas[0].Version == 0 {
		t.Fatalf("sagas: %+v %v", sg, err)
	}
	sg, err = e.SagasList(ctx, map[string]any{"limit": 1})
	if err != nil || len(sg.Sagas) != 1 || sg.NextCursor == "" {
		t.Fatalf("sagas page: %+v %v", sg, err)
	}
	var corrs []string
	if err := e.EachSaga(ctx, map[string]any{"limit": 1}, func(s SagaInfo) error { corrs = append(corrs, s.CorrelationID); return nil }); err != nil || strings.Join(corrs, ",") != "o-1,o-2" {
		t.Fatalf("EachSaga %v %v", corrs, err)
	}
	sh, err := e.SagaShow(ctx, "", "order", "o-2")
	if err != nil || sh.Status != "done" || !strings.Contains(string(sh.State), "paid") || len(sh.Applied) != 2 ||
		sh.Applied[0].Type != "order.placed" || sh.Applied[1].Type != "charge.completed" || len(sh.Pending) != 0 {
		t.Fatalf("saga show: %+v %v", sh, err)
	}
	if _, err := e.SagaShow(ctx, "", "order", "o-9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing saga: %v", err)
	}

	ev, err := e.EventsList(ctx, map[string]any{"status": "unmatched"})
	if err != nil || len(ev.Events) != 1 || ev.Events[0].EventID != "x" || ev.Events[0].Status != "unmatched" {
		t.Fatalf("unmatched events: %+v %v", ev, err)
	}
	ev, err = e.EventsList(ctx, map[string]any{"correlation_id": "o-1"})
	if err != nil || len(ev.Events) != 2 || ev.Events[0].Type != "order.placed" || ev.Events[0].Status != "applied" ||
		ev.Events[0].ReceivedAt == 0 || !strings.Contains(string(ev.Events[0].Event), "o-1:placed") {
		t.Fatalf("events of o-1: %+v %v", ev, err)
	}
	var seqs []int64
	if err := e.EachEvent(ctx, map[string]any{"limit": 2}, func(v EventInfo) error { seqs = append(seqs, v.Seq); return nil }); err != nil || len(seqs) != 5 ||
		!sort.SliceIsSorted(seqs, func(i, j int) bool { return seqs[i] < seqs[j] }) {
		t.Fatalf("EachEvent %v %v", seqs, err)
	}

	en, err := e.EnginesList(ctx)
	if err != nil || len(en.Engines) != 1 || !en.Engines[0].Live || en.Engines[0].Liveness != "this engine" ||
		en.Engines[0].PID != int64(os.Getpid()) || strings.Join(en.Engines[0].Effects, ",") != "charge" {
		t.Fatalf("engines: %+v %v", en, err)
	}
}

// A bad filter key is ErrInvalid with a message naming it, read on the
// failing call's thread: goroutines failing with different keys at once
// each get their own message.
func TestReadBadFilters(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	calls := map[string]func(f any) error{
		"jobs":      func(f any) error { _, err := e.JobsList(ctx, f); return err },
		"schedules": func(f any) error { _, err := e.SchedulesList(ctx, f); return err },
		"sagas":     func(f any) error { _, err := e.SagasList(ctx, f); return err },
		"events":    func(f any) error { _, err := e.EventsList(ctx, f); return err },
		"check":     func(f any) error { _, err := e.Check(ctx, f); return err },
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(name string, call func(any) error, g int) {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					key := fmt.Sprintf("bogus_%s_%d_%d", name, g, i)
					err := call(map[string]any{key: 1})
					var we *WfError
					if !errors.As(err, &we) || we.Code != EINVAL || !strings.Contains(we.Message, key) {
						t.Errorf("%s: %v", key, err)
						return
					}
					if err := call(nil); err != nil { // success clears nothing of the other threads
						t.Error(err)
						return
					}
				}
			}(name, call, g)
		}
	}
	wg.Wait()
	if _, err := e.JobsList(ctx, map[string]any{"state": "sleeping"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "state") {
		t.Fatalf("bad state: %v", err)
	}
	if _, err := e.JobsList(ctx, map[string]any{"cursor": "garbage"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cursor") {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, err := e.JobsList(ctx, map[string]any{"limit": 0}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("bad limit: %v", err)
	}
	if err := e.EachJob(ctx, `[1]`, func(JobInfo) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("EachJob with an array: %v", err)
	}
	if err := e.EachJob(ctx, map[string]any{"colour": 1}, func(JobInfo) error { return nil }); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("EachJob bad key: %v", err)
	}
}

func TestCheckAndBackup(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		id, err := e.Enqueue(ctx, JobSpec{Effect: "later", Key: fmt.Sprintf("b%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	c, err := e.Check(ctx, nil)
	if err != nil || !c.OK || len(c.Problems) != 0 || c.Checks[0] != "integrity_check" || len(c.Checks) < 5 {
		t.Fatalf("check: %+v %v", c, err)
	}
	c, err = e.Check(ctx, map[string]any{"quick": true})
	if err != nil || !c.OK || c.Checks[0] != "quick_check" {
		t.Fatalf("quick check: %+v %v", c, err)
	}

	dest := filepath.Join(t.TempDir(), "backup.db")
	if err := e.Backup(ctx, dest); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dest)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	if err := e.Backup(ctx, dest); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "overwrite") {
		t.Fatalf("second backup to the same path: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := e.Backup(cctx, filepath.Join(t.TempDir(), "never.db")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backup: %v", err)
	}
	// The copy opens and holds the jobs.
	b, err := Open(dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, err := b.JobsList(ctx, nil)
	if err != nil || strings.Join(jobIDs(p.Jobs), ",") != strings.Join(ids, ",") {
		t.Fatalf("jobs in the backup: %+v %v", p, err)
	}
	if c, err := b.Check(ctx, nil); err != nil || !c.OK {
		t.Fatalf("check of the backup: %+v %v", c, err)
	}
}

// A read-only engine on a file that an engine in another process writes:
// the reads see each commit, writes are ErrState.
func TestReadOnlyBesideWriter(t *testing.T) {
	if db := os.Getenv("WFGO_RO_CHILD"); db != "" {
		readOnlyWriterChild(db)
		return
	}
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "shared.db")
	if _, err := Open(db, map[string]any{"read_only": true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read_only on a missing file: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadOnlyBesideWriter$")
	cmd.Env = append(os.Environ(), "WFGO_RO_CHILD="+db)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	out := bufio.NewScanner(outp)
	expect := func(word string) {
		t.Helper()
		var said []string
		for out.Scan() {
			if out.Text() == word {
				return
			}
			said = append(said, out.Text())
		}
		t.Fatalf("child did not say %q: %q", word, said)
	}
	expect("ready")

	ro, err := Open(db, map[string]any{"read_only": true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	p, err := ro.JobsList(ctx, nil)
	if err != nil || len(p.Jobs) != 5 {
		t.Fatalf("read-only listing: %+v %v", p, err)
	}
	en, err := ro.EnginesList(ctx)
	if err != nil || len(en.Engines) != 1 || en.Engines[0].PID != int64(cmd.Process.Pid) || !en.Engines[0].Live {
		t.Fatalf("engines seen read-only: %+v %v", en, err)
	}
	if _, err := ro.Enqueue(ctx, JobSpec{Effect: "w"}); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "read_only") {
		t.Fatalf("enqueue read-only: %v", err)
	}
	if err := ro.Start(); !errors.Is(err, ErrState) {
		t.Fatalf("start read-only: %v", err)
	}
	if _, err := ro.Begin(); !errors.Is(err, ErrState) {
		t.Fatalf("tx read-only: %v", err)
	}
	if _, err := ro.Stats(nil); err != nil {
		t.Fatal(err)
	}
	if m, err := ro.Metrics(); err != nil || !strings.Contains(m, "wfengine_") {
		t.Fatalf("metrics read-only: %v", err)
	}
	if c, err := ro.Check(ctx, nil); err != nil || !c.OK {
		t.Fatalf("check read-only: %+v %v", c, err)
	}
	dest := filepath.Join(t.TempDir(), "ro-backup.db")
	if err := ro.Backup(ctx, dest); err != nil {
		t.Fatalf("backup read-only: %v", err)
	}

	// The writer commits more; the next read sees it.
	_, _ = io.WriteString(in, "more\n")
	expect("done")
	p, err = ro.JobsList(ctx, map[string]any{"effect": "w", "limit": 6})
	if err != nil || len(p.Jobs) != 6 || p.NextCursor == "" {
		t.Fatalf("after more: %+v %v", p, err)
	}
	if g, err := ro.JobGet(ctx, "", "w9"); err != nil || g.State != "ready" {
		t.Fatalf("get read-only: %+v %v", g, err)
	}
	_ = in.Close() // the child closes its engine and exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

func readOnlyWriterChild(db string) {
	e, err := Open(db, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	enq := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := e.Enqueue(ctx, JobSpec{Effect: "w", Key: fmt.Sprintf("w%d", i)}); err != nil {
				fmt.Println("enqueue:", err)
				os.Exit(2)
			}
		}
	}
	enq(0, 5)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "more" {
			enq(5, 10)
			fmt.Println("done")
		}
	}
	if err := e.Close(); err != nil {
		fmt.Println("close:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// The admin_listen option through the binding: the engine serves /metrics
// and /health on 127.0.0.1, and Metrics returns the same exposition.
func TestAdminListenAndMetrics(t *testing.T) {
	e, err := Open(filepath.Join(t.TempDir(), "admin.db"), map[string]any{"admin_listen": "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_ = e.RegisterEffect("m", nil, func(j *Job) { _ = j.Complete(nil) })
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enqueue(context.Background(), JobSpec{Effect: "m"}); err != nil {
		t.Fatal(err)
	}
	settle(t, e)
	raw, err := e.Stats(nil)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Engine struct {
			AdminPort int `json:"admin_port"`
		} `json:"engine"`
	}
	if err := json.Unmarshal(raw, &s); err != nil || s.Engine.AdminPort == 0 {
		t.Fatalf("admin_port in %s: %v", raw, err)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", s.Engine.AdminPort, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "wfengine_jobs_completed_total") {
		t.Fatalf("/metrics: %d %.200s", code, body)
	}
	if code, body := get("/health"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/health: %d %s", code, body)
	}
	m, err := e.Metrics()
	if err != nil || !strings.Contains(m, `wfengine_jobs_completed_total{effect="m"} 1`) {
		t.Fatalf("Metrics: %v\n%s", err, m)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), map[string]any{"admin_listen": "nowhere"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "admin_listen") {
		t.Fatalf("bad admin_listen: %v", err)
	}
}
