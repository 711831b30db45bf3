package wfengine

/*
#include <stdlib.h>
#include <string.h>
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"log"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// EffectFunc serves one attempt of a job. It runs on the engine's loop
// thread and must not block: complete the job now or hand it to a goroutine
// and complete it from there (any goroutine may). A panic becomes a retry
// with the panic text; a Job dropped without completion becomes a retry when
// the garbage collector finalizes it.
type EffectFunc func(job *Job)

// Job is one attempt of a job handed to an EffectFunc. Its fields are Go
// copies, valid for ever; the underlying handle is released by exactly one of
// Complete, Retry or Fail (later calls return ErrState).
type Job struct {
	ID       string
	Key      string
	Tenant   string
	Effect   string
	Payload  json.RawMessage
	Metadata json.RawMessage
	Attempt  int

	mu sync.Mutex
	j  *C.wf_job
}

var errJobDone = &WfError{Code: ESTATE, Op: "job", Message: "job already completed through this handle"}

func (j *Job) finish(op string, f func(h *C.wf_job, msg **C.char) C.int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.j == nil {
		return errJobDone
	}
	h := j.j
	j.j = nil // gone whatever the outcome, except EINVAL on a bad result
	var msg *C.char
	rc := f(h, &msg)
	if rc == EINVAL && op == "job_complete" {
		j.j = h // "an invalid one is WF_EINVAL and j stays valid"
	}
	return status(op, rc, msg)
}

// Complete completes the attempt; result is nil or a JSON document (string,
// []byte, json.RawMessage or a value to marshal).
func (j *Job) Complete(result any) error {
	d, err := doc(result)
	if err != nil {
		return err
	}
	defer cfree(d)
	return j.finish("job_complete", func(h *C.wf_job, m **C.char) C.int { return C.wfgo_job_complete(h, d, m) })
}

// Retry fails the attempt transiently: it runs again after delay, or after
// the policy's backoff when delay < 0.
func (j *Job) Retry(reason string, delay time.Duration) error {
	r := C.CString(reason)
	defer cfree(r)
	ms := int64(-1)
	if delay >= 0 {
		ms = delay.Milliseconds()
	}
	return j.finish("job_retry", func(h *C.wf_job, m **C.char) C.int { return C.wfgo_job_retry(h, r, C.int64_t(ms), m) })
}

// Fail makes the job a dead letter with reason.
func (j *Job) Fail(reason string) error {
	r := C.CString(reason)
	defer cfree(r)
	return j.finish("job_fail", func(h *C.wf_job, m **C.char) C.int { return C.wfgo_job_fail(h, r, m) })
}

// Done reports whether the handle was released.
func (j *Job) Done() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.j == nil
}

func jobFinalizer(j *Job) {
	if !j.Done() {
		log.Printf("wfengine: job %s (%s) dropped without completion; retrying it", j.ID, j.Effect)
		_ = j.Retry("job handle garbage-collected without completion", -1)
	}
}

//export wfgoEffect
func wfgoEffect(h C.uintptr_t, jh *C.wf_job) {
	fn := cgo.Handle(h).Value().(EffectFunc)
	var n C.size_t
	p := C.wfgo_job_payload(jh, &n)
	j := &Job{
		ID:       C.GoString(C.wfgo_job_id(jh)),
		Key:      C.GoString(C.wfgo_job_key(jh)),
		Tenant:   C.GoString(C.wfgo_job_tenant(jh)),
		Effect:   C.GoString(C.wfgo_job_effect(jh)),
		Payload:  json.RawMessage(C.GoBytes(unsafe.Pointer(p), C.int(n))),
		Metadata: json.RawMessage(C.GoString(C.wfgo_job_metadata(jh))),
		Attempt:  int(C.wfgo_job_attempt(jh)),
		j:        jh,
	}
	runtime.SetFinalizer(j, jobFinalizer)
	defer func() {
		if r := recover(); r != nil {
			if !j.Done() {
				_ = j.Retry(fmt.Sprintf("panic: %v", r), -1)
			}
		}
	}()
	fn(j)
}

// RegisterEffect registers fn as the provider of effect. policy is nil or
// the policy document (docs/options.md).
func (e *Engine) RegisterEffect(effect string, policy any, fn EffectFunc) error {
	if fn == nil {
		return &WfError{Code: EINVAL, Op: "effect_register", Message: "fn is nil"}
	}
	p, err := doc(policy)
	if err != nil {
		return err
	}
	defer cfree(p)
	ce := C.CString(effect)
	defer cfree(ce)
	h := cgo.NewHandle(fn)
	var msg *C.char
	if err := status("effect_register", C.wfgo_effect_register(e.e, ce, p, C.uintptr_t(h), &msg), msg); err != nil {
		h.Delete()
		return err
	}
	e.keep(h)
	e.mu.Lock()
	e.effects[effect] = true
	e.mu.Unlock()
	return nil
}

// RegisterBuiltin registers a built-in provider (docs/providers.md), e.g.
// {"type":"http","url":...}.
func (e *Engine) RegisterBuiltin(effect string, config any) error {
	c, err := doc(config)
	if err != nil {
		return err
	}
	defer cfree(c)
	ce := C.CString(effect)
	defer cfree(ce)
	var msg *C.char
	if err := status("effect_register_builtin", C.wfgo_effect_register_builtin(e.e, ce, c, &msg), msg); err != nil {
		return err
	}
	e.mu.Lock()
	e.effects[effect] = true
	e.mu.Unlock()
	return nil
}

// ReducerFunc is a saga reducer: pure and deterministic. input is
// {"saga","tenant","correlation_id","state","event"}; it returns
// {"state","commands","schedules","cancel_schedules","done"} as JSON text or a
// value to marshal. An error or panic parks the event as a dead letter.
type ReducerFunc func(input json.RawMessage) (any, error)

//export wfgoSaga
func wfgoSaga(h C.uintptr_t, in *C.char, n C.size_t, out *C.wf_buf) (rc C.int) {
	fn := cgo.Handle(h).Value().(ReducerFunc)
	defer func() {
		if r := recover(); r != nil {
			log.Printf("wfengine: saga reducer panicked: %v", r)
			rc = 1
		}
	}()
	res, err := fn(json.RawMessage(C.GoBytes(unsafe.Pointer(in), C.int(n))))
	if err != nil {
		log.Printf("wfengine: saga reducer: %v", err)
		return 1
	}
	d, err := doc(res)
	if err != nil || d == nil {
		return 1
	}
	defer cfree(d)
	if C.wfgo_buf_set(out, d, C.strlen(d)) != 0 {
		return 1
	}
	return 0
}

// RegisterSaga registers a saga with spec {"start","on","correlation"}.
func (e *Engine) RegisterSaga(saga string, spec any, fn ReducerFunc) error {
	if fn == nil {
		return &WfError{Code: EINVAL, Op: "saga_register", Message: "fn is nil"}
	}
	s, err := doc(spec)
	if err != nil {
		return err
	}
	defer cfree(s)
	cs := C.CString(saga)
	defer cfree(cs)
	h := cgo.NewHandle(fn)
	var msg *C.char
	if err := status("saga_register", C.wfgo_saga_register(e.e, cs, s, C.uintptr_t(h), &msg), msg); err != nil {
		h.Delete()
		return err
	}
	e.keep(h)
	return nil
}

// Log levels of SetLogger.
const (
	LogDebug = 0
	LogInfo  = 1
	LogWarn  = 2
	LogError = 3
)

// LogFunc receives one JSON log line, from the engine's logger thread.
type LogFunc func(level int, jsonLine string)

//export wfgoLog
func wfgoLog(h C.uintptr_t, level C.int, line *C.char) {
	fn := cgo.Handle(h).Value().(LogFunc)
	defer func() { _ = recover() }()
	fn(int(level), C.GoString(line))
}

// SetLogger sends the engine's log lines at minLevel or above to fn (nil
// removes the logger).
func (e *Engine) SetLogger(minLevel int, fn LogFunc) error {
	var msg *C.char
	if fn == nil {
		return status("set_logger", C.wfgo_clear_logger(e.e, &msg), msg)
	}
	h := cgo.NewHandle(fn)
	if err := status("set_logger", C.wfgo_set_logger(e.e, C.int(minLevel), C.uintptr_t(h), &msg), msg); err != nil {
		h.Delete()
		return err
	}
	e.keep(h) // freed at Close: the previous logger may be re-set meanwhile
	return nil
}

var (
	defaultLoggerMu sync.Mutex
	defaultLoggers  []cgo.Handle // kept: engines opened with one may still use it
)

// SetDefaultLogger sets the process-wide logger that engines opened from now
// on start with (so that what Open itself logs reaches fn); nil removes it.
// Engine.SetLogger replaces it for one engine.
func SetDefaultLogger(minLevel int, fn LogFunc) error {
	if err := Load(); err != nil {
		return err
	}
	var msg *C.char
	if fn == nil {
		return status("set_default_logger", C.wfgo_set_default_logger(0, 0, 1, &msg), msg)
	}
	h := cgo.NewHandle(fn)
	if err := status("set_default_logger", C.wfgo_set_default_logger(C.int(minLevel), C.uintptr_t(h), 0, &msg), msg); err != nil {
		h.Delete()
		return err
	}
	defaultLoggerMu.Lock()
	defaultLoggers = append(defaultLoggers, h)
	defaultLoggerMu.Unlock()
	return nil
}
