package wfengine

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"log"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Engine is an open wfengine database. All methods are safe for concurrent
// use. Close it with defer; an Engine the garbage collector finds unclosed is
// logged and closed by a finalizer (which cannot happen while a registered
// callback still references it).
type Engine struct {
	closeMu sync.Mutex
	mu      sync.Mutex
	e       *C.wf_engine
	closed  bool
	handles []cgo.Handle
	effects map[string]bool
	clock   *C.int64_t
}

// Open opens (creating if needed) the database at path. options is nil, a
// JSON string/[]byte, or a value marshalled to JSON (docs/options.md).
func Open(path string, options any) (*Engine, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	opts, err := doc(options)
	if err != nil {
		return nil, err
	}
	defer cfree(opts)
	cp := C.CString(path)
	defer cfree(cp)
	var out *C.wf_engine
	var msg *C.char
	rc := C.wfgo_open(cp, opts, &out, &msg)
	if err := status("open", rc, msg); err != nil {
		return nil, err
	}
	eng := &Engine{e: out, effects: map[string]bool{}}
	runtime.SetFinalizer(eng, func(e *Engine) {
		log.Printf("wfengine: engine garbage-collected without Close; closing it")
		_ = e.Close()
	})
	return eng, nil
}

// Start starts the relay loop (dispatch to registered effects).
func (e *Engine) Start() error {
	var msg *C.char
	return status("start", C.wfgo_start(e.e, &msg), msg)
}

// Drain stops claiming jobs and waits for the in-flight ones, until ctx's
// deadline (30 s if it has none). New enqueues fail with ErrClosed afterwards.
func (e *Engine) Drain(ctx context.Context) error {
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout < 0 {
			timeout = 0
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var msg *C.char
	return status("drain", C.wfgo_drain(e.e, C.int64_t(timeout.Milliseconds()), &msg), msg)
}

// Close drains (bounded by the drain_timeout_ms option), closes the database
// and releases callback state. A second Close returns nil.
func (e *Engine) Close() error {
	// closeMu, not mu: callbacks that wf_close waits for may take mu (Now,
	// RegisterEffect, ...).
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil
	}
	var msg *C.char
	if err := status("close", C.wfgo_close(e.e, &msg), msg); err != nil {
		return err // e.g. ErrBusy from a callback: nothing was closed
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	runtime.SetFinalizer(e, nil)
	// No callback runs any more: free the callback state.
	for _, h := range e.handles {
		h.Delete()
	}
	e.handles = nil
	if e.clock != nil {
		C.free(unsafe.Pointer(e.clock))
		e.clock = nil
	}
	return nil
}

func (e *Engine) keep(h cgo.Handle) {
	e.mu.Lock()
	e.handles = append(e.handles, h)
	e.mu.Unlock()
}

// Wake makes the relay re-evaluate due jobs and timers now.
func (e *Engine) Wake() error {
	var msg *C.char
	return status("wake", C.wfgo_wake(e.e, &msg), msg)
}

// Sync returns once every outcome and write queued before it is committed.
// If ctx ends first it returns ctx.Err() (the barrier still completes in
// the background).
func (e *Engine) Sync(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		var msg *C.char
		done <- status("sync", C.wfgo_sync(e.e, &msg), msg)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// UseVirtualClock makes the engine read "now" from a clock the caller moves
// with SetClock/AdvanceClock (tests, simulations), starting at start.
func (e *Engine) UseVirtualClock(start time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return &WfError{Code: ECLOSED, Op: "set_clock", Message: "engine closed"}
	}
	if e.clock == nil {
		e.clock = (*C.int64_t)(C.malloc(8))
	}
	C.wfgo_clock_store(e.clock, C.int64_t(start.UnixMilli()))
	var msg *C.char
	return status("set_clock", C.wfgo_set_virtual_clock(e.e, e.clock, &msg), msg)
}

// Now is the engine's virtual time (the system time without a virtual clock).
func (e *Engine) Now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clock == nil {
		return time.Now()
	}
	return time.UnixMilli(int64(C.wfgo_clock_load(e.clock)))
}

// AdvanceClock moves the virtual clock forward by d and wakes the relay.
func (e *Engine) AdvanceClock(d time.Duration) error {
	e.mu.Lock()
	if e.clock == nil || e.closed {
		e.mu.Unlock()
		return &WfError{Code: EINVAL, Op: "advance_clock", Message: "no virtual clock (call UseVirtualClock)"}
	}
	C.wfgo_clock_store(e.clock, C.wfgo_clock_load(e.clock)+C.int64_t(d.Milliseconds()))
	e.mu.Unlock()
	return e.Wake()
}

// JobSpec is the job document of Enqueue (docs/semantics.md). A map or any
// JSON-marshallable value may be passed instead.
type JobSpec struct {
	Effect      string `json:"effect"`
	Payload     any    `json:"payload,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	Key         string `json:"key,omitempty"`
	RunAt       any    `json:"run_at,omitempty"`
	DelayMs     int64  `json:"delay_ms,omitempty"`
	Priority    int    `json:"priority,omitempty"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	Metadata    any    `json:"metadata,omitempty"`
}

// Enqueue enqueues one job durably and returns its id. With ErrExists
// (errors.Is) the id is that of the job already holding the key.
func (e *Engine) Enqueue(ctx context.Context, job any) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	d, err := doc(job)
	if err != nil {
		return "", err
	}
	defer cfree(d)
	var id, msg *C.char
	rc := C.wfgo_enqueue(e.e, d, &id, &msg)
	return takeStr(id), status("enqueue", rc, msg)
}

// EnqueueResult is one entry of EnqueueBatch's answer.
type EnqueueResult struct {
	ID       string `json:"id"`
	Existing bool   `json:"existing"`
}

// EnqueueBatch enqueues jobs (a slice, or a JSON array) in one transaction.
func (e *Engine) EnqueueBatch(ctx context.Context, jobs any) ([]EnqueueResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := doc(jobs)
	if err != nil {
		return nil, err
	}
	defer cfree(d)
	var ids, msg *C.char
	rc := C.wfgo_enqueue_batch(e.e, d, &ids, &msg)
	s := takeStr(ids)
	if err := status("enqueue_batch", rc, msg); err != nil {
		return nil, err
	}
	var out []EnqueueResult
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// DoneFunc receives the outcome of an async enqueue/submit: err is nil when
// durable; with ErrExists the id is the existing holder's.
type DoneFunc func(id string, err error)

type doneState struct {
	op string
	fn DoneFunc
}

// EnqueueAsync validates the job, queues the write and returns; fn (nil ok)
// is called once on the engine's notifier thread when it is durable or has
// failed. It blocks while the async queue is full (back pressure).
func (e *Engine) EnqueueAsync(ctx context.Context, job any, fn DoneFunc) error {
	return e.async(ctx, "enqueue_async", job, fn)
}

// SubmitAsync is EnqueueAsync for an event (document as Submit).
func (e *Engine) SubmitAsync(ctx context.Context, event any, fn DoneFunc) error {
	return e.async(ctx, "submit_async", event, fn)
}

func (e *Engine) async(ctx context.Context, op string, v any, fn DoneFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := doc(v)
	if err != nil {
		return err
	}
	defer cfree(d)
	h := cgo.NewHandle(&doneState{op: op, fn: fn})
	var msg *C.char
	var rc C.int
	if op == "submit_async" {
		rc = C.wfgo_submit_async(e.e, d, C.uintptr_t(h), &msg)
	} else {
		rc = C.wfgo_enqueue_async(e.e, d, C.uintptr_t(h), &msg)
	}
	if err := status(op, rc, msg); err != nil {
		h.Delete() // never called back
		return err
	}
	return nil
}

//export wfgoDone
func wfgoDone(h C.uintptr_t, st C.int, id *C.char, m *C.char) {
	hd := cgo.Handle(h)
	ds := hd.Value().(*doneState)
	hd.Delete()
	if ds.fn == nil {
		return
	}
	var err error
	if st < 0 {
		err = &WfError{Code: int(st), Op: ds.op, Message: C.GoString(m)}
	}
	idS := ""
	if id != nil {
		idS = C.GoString(id)
	}
	defer func() {
		if r := recover(); r != nil {
			log.Printf("wfengine: panic in %s callback: %v", ds.op, r)
		}
	}()
	ds.fn(idS, err)
}

// Cancel cancels a job that is not running, by id or key, in tenant.
func (e *Engine) Cancel(tenant, idOrKey string) error {
	t, k := C.CString(tenant), C.CString(idOrKey)
	defer cfree(t)
	defer cfree(k)
	var msg *C.char
	return status("cancel", C.wfgo_cancel(e.e, t, k, &msg), msg)
}

// Schedule creates or replaces a durable timer (docs/scheduler.md).
func (e *Engine) Schedule(schedule any) error {
	d, err := doc(schedule)
	if err != nil {
		return err
	}
	defer cfree(d)
	var msg *C.char
	return status("schedule", C.wfgo_schedule(e.e, d, &msg), msg)
}

// Unschedule removes a schedule.
func (e *Engine) Unschedule(tenant, key string) error {
	t, k := C.CString(tenant), C.CString(key)
	defer cfree(t)
	defer cfree(k)
	var msg *C.char
	return status("unschedule", C.wfgo_unschedule(e.e, t, k, &msg), msg)
}

// Submit submits an event durably (deduplicated by tenant and event_id).
func (e *Engine) Submit(event any) error {
	d, err := doc(event)
	if err != nil {
		return err
	}
	defer cfree(d)
	var msg *C.char
	return status("submit", C.wfgo_submit(e.e, d, &msg), msg)
}

func (e *Engine) jsonOut(op string, f func(out, msg **C.char) C.int) (json.RawMessage, error) {
	var out, msg *C.char
	rc := f(&out, &msg)
	s := takeStr(out)
	if err := status(op, rc, msg); err != nil {
		return nil, err
	}
	return json.RawMessage(s), nil
}

// Stats returns the statistics document (docs/operations.md); filter nil or
// {"tenant","effect"}.
func (e *Engine) Stats(filter any) (json.RawMessage, error) {
	d, err := doc(filter)
	if err != nil {
		return nil, err
	}
	defer cfree(d)
	return e.jsonOut("stats", func(o, m **C.char) C.int { return C.wfgo_stats(e.e, d, o, m) })
}

// Metrics returns the Prometheus text exposition.
func (e *Engine) Metrics() (string, error) {
	r, err := e.jsonOut("metrics", func(o, m **C.char) C.int { return C.wfgo_metrics(e.e, o, m) })
	return string(r), err
}

// DeadList lists dead letters matching filter, newest first.
func (e *Engine) DeadList(filter any) (json.RawMessage, error) {
	d, err := doc(filter)
	if err != nil {
		return nil, err
	}
	defer cfree(d)
	return e.jsonOut("dead_list", func(o, m **C.char) C.int { return C.wfgo_dead_list(e.e, d, o, m) })
}

// DeadRequeue moves matching dead letters back to the queue.
func (e *Engine) DeadRequeue(filter any) (int64, error) {
	d, err := doc(filter)
	if err != nil {
		return 0, err
	}
	defer cfree(d)
	var n C.int64_t
	var msg *C.char
	rc := C.wfgo_dead_requeue(e.e, d, &n, &msg)
	return int64(n), status("dead_requeue", rc, msg)
}

// DeadPurge deletes matching dead letters.
func (e *Engine) DeadPurge(filter any) (int64, error) {
	d, err := doc(filter)
	if err != nil {
		return 0, err
	}
	defer cfree(d)
	var n C.int64_t
	var msg *C.char
	rc := C.wfgo_dead_purge(e.e, d, &n, &msg)
	return int64(n), status("dead_purge", rc, msg)
}

// SagaGet returns {"state","status","version","parked","pending"}.
func (e *Engine) SagaGet(tenant, saga, correlationID string) (json.RawMessage, error) {
	t, s, c := C.CString(tenant), C.CString(saga), C.CString(correlationID)
	defer cfree(t)
	defer cfree(s)
	defer cfree(c)
	return e.jsonOut("saga_get", func(o, m **C.char) C.int { return C.wfgo_saga_get(e.e, t, s, c, o, m) })
}

// SagaReplay re-runs an instance's events through the registered reducer.
func (e *Engine) SagaReplay(tenant, saga, correlationID string, options any) (json.RawMessage, error) {
	t, s, c := C.CString(tenant), C.CString(saga), C.CString(correlationID)
	defer cfree(t)
	defer cfree(s)
	defer cfree(c)
	o, err := doc(options)
	if err != nil {
		return nil, err
	}
	defer cfree(o)
	return e.jsonOut("saga_replay", func(out, m **C.char) C.int {
		return C.wfgo_saga_replay(e.e, t, s, c, o, out, m)
	})
}
