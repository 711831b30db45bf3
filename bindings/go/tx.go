package wfengine

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"log"
	"runtime"
	"sync"
)

// Tx is a host write transaction on the engine's database: the host's own
// SQL and enqueues commit or roll back together. Finish it with Commit or
// Rollback (defer tx.Rollback() right after Begin is safe: after Commit it
// does nothing). A Tx the garbage collector finds open is logged and rolled
// back. Not for concurrent use.
type Tx struct {
	mu   sync.Mutex
	t    *C.wf_tx
	work chan func()
}

// txThread runs every wf_tx_* call of one transaction on a dedicated OS
// thread (a goroutine locked to it). The engine answers WF_EBUSY to writes
// from the thread that made the last call on an open transaction; with Go's
// scheduler that thread could otherwise run any other goroutine's cgo call.
func txThread(work chan func()) {
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	for f := range work {
		f()
	}
}

// on runs f on the transaction's thread and waits for it.
func (tx *Tx) on(f func()) {
	done := make(chan struct{})
	tx.work <- func() { f(); close(done) }
	<-done
}

func (tx *Tx) stop() {
	close(tx.work)
	runtime.SetFinalizer(tx, nil)
}

// Begin opens a transaction. Keep it short: other writers wait behind it.
func (e *Engine) Begin() (*Tx, error) {
	tx := &Tx{work: make(chan func())}
	go txThread(tx.work)
	var rc C.int
	var msg *C.char
	var t *C.wf_tx
	tx.on(func() { rc = C.wfgo_tx_begin(e.e, &t, &msg) })
	if err := status("tx_begin", rc, msg); err != nil {
		close(tx.work)
		return nil, err
	}
	tx.t = t
	runtime.SetFinalizer(tx, func(tx *Tx) {
		log.Printf("wfengine: transaction garbage-collected while open; rolling it back")
		_ = tx.Rollback()
	})
	return tx, nil
}

func (tx *Tx) handle() (*C.wf_tx, error) {
	if tx.t == nil {
		return nil, &WfError{Code: ESTATE, Op: "tx", Message: "transaction already finished"}
	}
	return tx.t, nil
}

// Exec runs one SQL statement with parameters (nil, a JSON array, or a
// slice) and returns the rows as a JSON array of objects.
func (tx *Tx) Exec(sql string, params any) (json.RawMessage, error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	t, err := tx.handle()
	if err != nil {
		return nil, err
	}
	p, err := doc(params)
	if err != nil {
		return nil, err
	}
	defer cfree(p)
	s := C.CString(sql)
	defer cfree(s)
	var rows, msg *C.char
	var rc C.int
	tx.on(func() { rc = C.wfgo_tx_exec(t, s, p, &rows, &msg) })
	r := takeStr(rows)
	if err := status("tx_exec", rc, msg); err != nil {
		return nil, err
	}
	return json.RawMessage(r), nil
}

// Enqueue enqueues a job inside the transaction.
func (tx *Tx) Enqueue(job any) (string, error) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	t, err := tx.handle()
	if err != nil {
		return "", err
	}
	d, err := doc(job)
	if err != nil {
		return "", err
	}
	defer cfree(d)
	var id, msg *C.char
	var rc C.int
	tx.on(func() { rc = C.wfgo_tx_enqueue(t, d, &id, &msg) })
	return takeStr(id), status("tx_enqueue", rc, msg)
}

// Schedule creates or replaces a schedule inside the transaction.
func (tx *Tx) Schedule(schedule any) error {
	return tx.docCall("tx_schedule", schedule, func(t *C.wf_tx, d *C.char, m **C.char) C.int { return C.wfgo_tx_schedule(t, d, m) })
}

// Submit submits an event inside the transaction.
func (tx *Tx) Submit(event any) error {
	return tx.docCall("tx_submit", event, func(t *C.wf_tx, d *C.char, m **C.char) C.int { return C.wfgo_tx_submit(t, d, m) })
}

func (tx *Tx) docCall(op string, v any, f func(*C.wf_tx, *C.char, **C.char) C.int) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	t, err := tx.handle()
	if err != nil {
		return err
	}
	d, err := doc(v)
	if err != nil {
		return err
	}
	defer cfree(d)
	var msg *C.char
	var rc C.int
	tx.on(func() { rc = f(t, d, &msg) })
	return status(op, rc, msg)
}

// Commit commits durably and frees the transaction (also on failure).
func (tx *Tx) Commit() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	t, err := tx.handle()
	if err != nil {
		return err
	}
	var msg *C.char
	var rc C.int
	tx.on(func() { rc = C.wfgo_tx_commit(t, &msg) })
	if rc != EFORKED {
		tx.t = nil
		tx.stop()
	}
	return status("tx_commit", rc, msg)
}

// Rollback rolls back and frees the transaction; nil after Commit/Rollback.
func (tx *Tx) Rollback() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.t == nil {
		return nil
	}
	var msg *C.char
	var rc C.int
	t := tx.t
	tx.on(func() { rc = C.wfgo_tx_rollback(t, &msg) })
	tx.t = nil
	tx.stop()
	return status("tx_rollback", rc, msg)
}
