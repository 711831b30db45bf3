package wfengine

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// The read API (include/wfengine.h, "read API"): listings for operators and
// tools. Each call reads one committed snapshot on the engine's read
// connection: it never waits for or delays the writer and takes no lease,
// and it works on an engine opened with {"read_only": true} while another
// process runs the engine on the file.
//
// Filters are documents like every other argument of this package: nil (no
// filter), JSON text, or a value marshalled to JSON (e.g. map[string]any{
// "state": "ready", "limit": 50}). An unknown key or a bad value is an
// ErrInvalid whose message names the key. Listings return at most "limit"
// items (default 100, 1..10000) and a NextCursor to pass as "cursor" for the
// next page ("" on the last page); the Each* methods follow the cursor for
// you. Results are typed; payloads, states and events stay json.RawMessage.
// JSON null comes back as the zero value ("" or 0).

// UnixMs is an instant as the read API reports it: milliseconds since the
// Unix epoch (0 where the engine reports null).
type UnixMs int64

// Time converts m to a time.Time (the zero Time for 0).
func (m UnixMs) Time() time.Time {
	if m == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(m))
}

// JobInfo is one job of JobsList or JobGet.
type JobInfo struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	Effect string `json:"effect"`
	Key    string `json:"key"`
	// State: "ready", "scheduled" (run_at in the future), "running", "dead"
	// (a dead letter) or, from JobGet only, "completed" (a finished job still
	// remembered by its key; then only ID, Tenant, Key, KeyExpiresAt and
	// History are set).
	State         string          `json:"state"`
	Payload       json.RawMessage `json:"payload"`
	Metadata      json.RawMessage `json:"metadata"`
	Priority      int64           `json:"priority"`
	RunAt         UnixMs          `json:"run_at"`
	Attempts      int64           `json:"attempts"`
	Failures      int64           `json:"failures"`
	MaxAttempts   int64           `json:"max_attempts"` // 0: the effect policy's
	LeaseOwner    string          `json:"lease_owner"`  // boot id of the engine running it
	LeaseUntil    UnixMs          `json:"lease_until"`
	StartedAt     UnixMs          `json:"started_at"`
	LastError     string          `json:"last_error"`
	Origin        json.RawMessage `json:"origin"` // null, or what emitted it (saga, schedule)
	CreatedAt     UnixMs          `json:"created_at"`
	Interruptions int64           `json:"interruptions"`
	Reason        string          `json:"reason"`         // dead letters
	DeadAt        UnixMs          `json:"dead_at"`        // dead letters
	KeyExpiresAt  UnixMs          `json:"key_expires_at"` // completed (JobGet)
	History       []AttemptInfo   `json:"history"`        // JobGet only
}

// AttemptInfo is one attempt in JobInfo.History.
type AttemptInfo struct {
	Attempt   int64  `json:"attempt"`
	StartedAt UnixMs `json:"started_at"`
	EndedAt   UnixMs `json:"ended_at"`
	Outcome   string `json:"outcome"`
	Error     string `json:"error"`
}

// JobsPage is one page of JobsList.
type JobsPage struct {
	Jobs       []JobInfo `json:"jobs"`
	NextCursor string    `json:"next_cursor"`
	Now        UnixMs    `json:"now"` // the engine's clock when it read
}

// ScheduleInfo is one schedule of SchedulesList.
type ScheduleInfo struct {
	Tenant       string          `json:"tenant"`
	Key          string          `json:"key"`
	Cron         string          `json:"cron"` // "" for a one-shot timer
	TZ           string          `json:"tz"`
	CatchUp      string          `json:"catch_up"`
	CatchUpMax   int64           `json:"catch_up_max"`
	Target       string          `json:"target"` // "job" or "event"
	Job          json.RawMessage `json:"job"`    // when Target is "job"
	Event        json.RawMessage `json:"event"`  // when Target is "event"
	NextDue      UnixMs          `json:"next_due"`
	Fired        int64           `json:"fired"`
	LastDue      UnixMs          `json:"last_due"`
	Origin       json.RawMessage `json:"origin"`
	CreatedAt    UnixMs          `json:"created_at"`
	Status       string          `json:"status"` // "active" or "parked"
	ParkedReason string          `json:"parked_reason"`
	ParkedAt     UnixMs          `json:"parked_at"`
}

// SchedulesPage is one page of SchedulesList.
type SchedulesPage struct {
	Schedules  []ScheduleInfo `json:"schedules"`
	NextCursor string         `json:"next_cursor"`
	Now        UnixMs         `json:"now"`
}

// SagaInfo is one saga instance of SagasList.
type SagaInfo struct {
	Tenant        string `json:"tenant"`
	Saga          string `json:"saga"`
	CorrelationID string `json:"correlation_id"`
	Status        string `json:"status"` // "new", "active" or "done"
	Version       int64  `json:"version"`
	CreatedAt     UnixMs `json:"created_at"`
	UpdatedAt     UnixMs `json:"updated_at"`
	Pending       int64  `json:"pending"` // events waiting
	Parked        int64  `json:"parked"`  // events parked (dead letters)
}

// SagasPage is one page of SagasList.
type SagasPage struct {
	Sagas      []SagaInfo `json:"sagas"`
	NextCursor string     `json:"next_cursor"`
}

// SagaDetail is one saga instance with its events (SagaShow).
type SagaDetail struct {
	Tenant        string             `json:"tenant"`
	Saga          string             `json:"saga"`
	CorrelationID string             `json:"correlation_id"`
	Status        string             `json:"status"`
	State         json.RawMessage    `json:"state"`
	Version       int64              `json:"version"`
	CreatedAt     UnixMs             `json:"created_at"`
	UpdatedAt     UnixMs             `json:"updated_at"`
	Applied       []SagaAppliedEvent `json:"applied"`
	Pending       []SagaPendingEvent `json:"pending"`
}

// SagaAppliedEvent is an event a step of the instance applied (an event
// purged by retention has only N and Seq).
type SagaAppliedEvent struct {
	N          int64           `json:"n"`
	Seq        int64           `json:"seq"`
	EventID    string          `json:"event_id"`
	Type       string          `json:"type"`
	ReceivedAt UnixMs          `json:"received_at"`
	Event      json.RawMessage `json:"event"`
}

// SagaPendingEvent is an event waiting for (or parked at) a step.
type SagaPendingEvent struct {
	InboxSeq   int64           `json:"inbox_seq"`
	Seq        int64           `json:"seq"`
	Start      bool            `json:"start"`
	Status     string          `json:"status"` // "pending" or "parked"
	Error      string          `json:"error"`
	EventID    string          `json:"event_id"`
	Type       string          `json:"type"`
	ReceivedAt UnixMs          `json:"received_at"`
	Event      json.RawMessage `json:"event"`
}

// EventInfo is one event of EventsList.
type EventInfo struct {
	Seq           int64           `json:"seq"`
	Tenant        string          `json:"tenant"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	CorrelationID string          `json:"correlation_id"`
	Event         json.RawMessage `json:"event"`
	ReceivedAt    UnixMs          `json:"received_at"`
	Routed        int64           `json:"routed"`
	Status        string          `json:"status"` // "unmatched", "pending", "parked" or "applied"
}

// EventsPage is one page of EventsList.
type EventsPage struct {
	Events     []EventInfo `json:"events"`
	NextCursor string      `json:"next_cursor"`
}

// EngineInfo is one engine registered in the file (EnginesList).
type EngineInfo struct {
	BootID      string `json:"boot_id"`
	PID         int64  `json:"pid"`
	Hostname    string `json:"hostname"`
	StartedAt   UnixMs `json:"started_at"`
	HeartbeatAt UnixMs `json:"heartbeat_at"`
	LockSlot    *int64 `json:"lock_slot"` // nil: no liveness lock
	Live        bool   `json:"live"`
	// Liveness: "this engine", "lock" (its liveness lock was tested) or
	// "heartbeat" (no lock to test: a heartbeat within two lease_ms).
	Liveness string   `json:"liveness"`
	Effects  []string `json:"effects"`
}

// EnginesPage is the answer of EnginesList.
type EnginesPage struct {
	Engines []EngineInfo `json:"engines"`
	Now     UnixMs       `json:"now"`
}

// CheckResult is the answer of Check.
type CheckResult struct {
	OK       bool           `json:"ok"`
	Checks   []string       `json:"checks"`
	Problems []CheckProblem `json:"problems"`
}

// CheckProblem is one inconsistency Check found.
type CheckProblem struct {
	Check  string `json:"check"`
	Detail string `json:"detail"`
}

// readDoc runs one read call returning a JSON document and decodes it.
func readDoc[T any](ctx context.Context, e *Engine, op string, f func(out, msg **C.char) C.int) (*T, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := e.jsonOut(op, f)
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("wfengine: %s: decode the answer: %w", op, err)
	}
	return v, nil
}

func readList[T any](ctx context.Context, e *Engine, op string, filter any,
	f func(d *C.char, out, msg **C.char) C.int) (*T, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := doc(filter)
	if err != nil {
		return nil, err
	}
	defer cfree(d)
	return readDoc[T](ctx, e, op, func(o, m **C.char) C.int { return f(d, o, m) })
}

// JobsList lists jobs not yet finished, oldest id first. Filter keys:
// "state" ("ready", "scheduled", "running", "pending" = ready or scheduled,
// "dead" = the dead letters instead), "effect", "tenant", "key", "since",
// "until" (created_at; ms or RFC 3339), "limit", "cursor".
func (e *Engine) JobsList(ctx context.Context, filter any) (*JobsPage, error) {
	return readList[JobsPage](ctx, e, "jobs_list", filter, func(d *C.char, o, m **C.char) C.int {
		return C.wfgo_jobs_list(e.e, d, o, m)
	})
}

// JobGet returns one job of tenant by id, or else by key: a pending or
// running job, a dead letter, or a completed job still remembered by its key
// (within dedupe_window_ms), with its attempt history. ErrNotFound if none.
func (e *Engine) JobGet(ctx context.Context, tenant, idOrKey string) (*JobInfo, error) {
	t, k := C.CString(tenant), C.CString(idOrKey)
	defer cfree(t)
	defer cfree(k)
	return readDoc[JobInfo](ctx, e, "job_get", func(o, m **C.char) C.int { return C.wfgo_job_get(e.e, t, k, o, m) })
}

// JobGetAnyTenant is JobGet by id in any tenant (wf_job_get with a NULL
// tenant); a reference that is no job id is looked up as a key in tenant "".
func (e *Engine) JobGetAnyTenant(ctx context.Context, idOrKey string) (*JobInfo, error) {
	k := C.CString(idOrKey)
	defer cfree(k)
	return readDoc[JobInfo](ctx, e, "job_get", func(o, m **C.char) C.int { return C.wfgo_job_get(e.e, nil, k, o, m) })
}

// SchedulesList lists schedules by (tenant, key). Filter keys: "tenant",
// "key", "status" ("active" | "parked"), "due_before", "limit", "cursor".
func (e *Engine) SchedulesList(ctx context.Context, filter any) (*SchedulesPage, error) {
	return readList[SchedulesPage](ctx, e, "schedules_list", filter, func(d *C.char, o, m **C.char) C.int {
		return C.wfgo_schedules_list(e.e, d, o, m)
	})
}

// SagasList lists saga instances by (tenant, saga, correlation id),
// including those whose first events wait (status "new"). Filter keys:
// "tenant", "saga", "correlation_id", "status" ("new" | "active" | "done" |
// "parked" = has a parked event), "limit", "cursor".
func (e *Engine) SagasList(ctx context.Context, filter any) (*SagasPage, error) {
	return readList[SagasPage](ctx, e, "sagas_list", filter, func(d *C.char, o, m **C.char) C.int {
		return C.wfgo_sagas_list(e.e, d, o, m)
	})
}

// SagaShow returns one saga instance with its state, applied and pending
// events. ErrNotFound if there is no such instance.
func (e *Engine) SagaShow(ctx context.Context, tenant, saga, correlationID string) (*SagaDetail, error) {
	t, s, c := C.CString(tenant), C.CString(saga), C.CString(correlationID)
	defer cfree(t)
	defer cfree(s)
	defer cfree(c)
	return readDoc[SagaDetail](ctx, e, "saga_show", func(o, m **C.char) C.int {
		return C.wfgo_saga_show(e.e, t, s, c, o, m)
	})
}

// EventsList lists events, oldest first. Filter keys: "tenant", "type",
// "correlation_id", "status" ("unmatched" | "pending" | "parked" |
// "applied"), "since", "until" (received_at), "limit", "cursor".
func (e *Engine) EventsList(ctx context.Context, filter any) (*EventsPage, error) {
	return readList[EventsPage](ctx, e, "events_list", filter, func(d *C.char, o, m **C.char) C.int {
		return C.wfgo_events_list(e.e, d, o, m)
	})
}

// EnginesList lists the engines registered in the file and whether each is
// live.
func (e *Engine) EnginesList(ctx context.Context) (*EnginesPage, error) {
	return readDoc[EnginesPage](ctx, e, "engines_list", func(o, m **C.char) C.int {
		return C.wfgo_engines_list(e.e, o, m)
	})
}

// inBackground runs a blocking C call on its own goroutine so that ctx can
// end the wait: then it returns ctx.Err() and the call completes in the
// background (like Sync).
func inBackground(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Check runs the integrity and consistency check on one snapshot (SQLite's
// integrity_check, or quick_check with options {"quick": true}; schema
// version; maintained counts; leases; dead letters; saga inbox). Problems
// found are in the result (OK false), not an error. It can take long on a
// big file: if ctx ends first it returns ctx.Err() and the check finishes in
// the background.
func (e *Engine) Check(ctx context.Context, options any) (*CheckResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := doc(options)
	if err != nil {
		return nil, err
	}
	var res *CheckResult
	err = inBackground(ctx, func() error {
		defer cfree(d)
		r, err := readDoc[CheckResult](context.Background(), e, "check", func(o, m **C.char) C.int {
			return C.wfgo_check(e.e, d, o, m)
		})
		res = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Backup writes a consistent copy of the committed state to the new file
// path (mode 0600, synced) while the engine keeps running; restore by
// opening the copy. ErrExists if path exists: a backup never overwrites. If
// ctx ends first, Backup returns ctx.Err() while the copy goes on in the
// background (on failure the engine removes the partial file).
func (e *Engine) Backup(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := C.CString(path)
	return inBackground(ctx, func() error {
		defer cfree(p)
		var msg *C.char
		return status("backup", C.wfgo_backup(e.e, p, &msg), msg)
	})
}

// withCursor returns filter (any document) as an object with "cursor" set.
func withCursor(filter any, cursor string) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	b, err := docBytes(filter)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, &WfError{Code: EINVAL, Op: "filter", Message: "filter must be a JSON object: " + err.Error()}
		}
	}
	if cursor != "" {
		c, _ := json.Marshal(cursor)
		m["cursor"] = c
	}
	return m, nil
}

// each pages through a listing from filter's "cursor" (if any) to the end.
func each[T any](ctx context.Context, filter any, list func(ctx context.Context, f any) ([]T, string, error), fn func(T) error) error {
	f, err := withCursor(filter, "")
	if err != nil {
		return err
	}
	for {
		items, next, err := list(ctx, f)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		c, _ := json.Marshal(next)
		f["cursor"] = c
	}
}

// EachJob calls fn for every job JobsList(filter) would list, following
// the cursor page by page ("limit" sets the page size). It stops at the
// first error, from the engine or returned by fn (return your own sentinel
// to stop early), and returns it. Each page is its own snapshot.
func (e *Engine) EachJob(ctx context.Context, filter any, fn func(JobInfo) error) error {
	return each(ctx, filter, func(ctx context.Context, f any) ([]JobInfo, string, error) {
		p, err := e.JobsList(ctx, f)
		if err != nil {
			return nil, "", err
		}
		return p.Jobs, p.NextCursor, nil
	}, fn)
}

// EachSchedule is EachJob for SchedulesList.
func (e *Engine) EachSchedule(ctx context.Context, filter any, fn func(ScheduleInfo) error) error {
	return each(ctx, filter, func(ctx context.Context, f any) ([]ScheduleInfo, string, error) {
		p, err := e.SchedulesList(ctx, f)
		if err != nil {
			return nil, "", err
		}
		return p.Schedules, p.NextCursor, nil
	}, fn)
}

// EachSaga is EachJob for SagasList.
func (e *Engine) EachSaga(ctx context.Context, filter any, fn func(SagaInfo) error) error {
	return each(ctx, filter, func(ctx context.Context, f any) ([]SagaInfo, string, error) {
		p, err := e.SagasList(ctx, f)
		if err != nil {
			return nil, "", err
		}
		return p.Sagas, p.NextCursor, nil
	}, fn)
}

// EachEvent is EachJob for EventsList.
func (e *Engine) EachEvent(ctx context.Context, filter any, fn func(EventInfo) error) error {
	return each(ctx, filter, func(ctx context.Context, f any) ([]EventInfo, string, error) {
		p, err := e.EventsList(ctx, f)
		if err != nil {
			return nil, "", err
		}
		return p.Events, p.NextCursor, nil
	}, fn)
}
