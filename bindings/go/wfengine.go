// Package wfengine is the Go binding of wfengine, an embeddable durable
// workflow engine (transactional outbox, relay to effect providers, dead
// letters, schedules, sagas).
//
// The shared library libwfengine.so is loaded at run time with dlopen (cgo;
// no link-time dependency). It is looked for in this order: the file named
// by WFENGINE_LIBRARY; lib/libwfengine.so beside the package source and
// beside the executable; the build tree of the repository (../../build);
// the install prefixes /usr/local/lib and /usr/lib; the system loader path.
// The binding was written for library version 0.1 and refuses another
// major.minor.
//
// Errors are *WfError values carrying the status code and wf_last_error()'s
// message, captured inside the same C call (so on the same OS thread) as the
// failing call.
package wfengine

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// VersionMajor and VersionMinor are the library version this binding was written for.
const (
	VersionMajor = 0
	VersionMinor = 1
)

// Status codes of the C API.
const (
	OK           = 0
	EINVAL       = -1
	ENOTFOUND    = -2
	EEXIST       = -3
	EBUSY        = -4
	ECLOSED      = -5
	EIO          = -6
	ECORRUPT     = -7
	ENOMEM       = -8
	ETIMEDOUT    = -9
	ETOOBIG      = -10
	ESTATE       = -11
	EUNSUPPORTED = -12
	EINTERNAL    = -13
	ECONFLICT    = -14
	EFORKED      = -15
)

// WfError is a failed call: the status code and wf_last_error()'s message.
type WfError struct {
	Code    int
	Op      string
	Message string
}

func (e *WfError) Error() string {
	name := ""
	if Load() == nil { // through the Once: no race with a concurrent load
		name = C.GoString(C.wfgo_strerror(C.int(e.Code)))
	}
	s := fmt.Sprintf("wfengine: %s: %s (%d)", e.Op, name, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors.Is(err, ErrNotFound) etc. compare status codes.
func (e *WfError) Is(target error) bool {
	t, ok := target.(*WfError)
	return ok && t.Code == e.Code && t.Op == ""
}

// Sentinels for errors.Is.
var (
	ErrInvalid     = &WfError{Code: EINVAL}
	ErrNotFound    = &WfError{Code: ENOTFOUND}
	ErrExists      = &WfError{Code: EEXIST}
	ErrBusy        = &WfError{Code: EBUSY}
	ErrClosed      = &WfError{Code: ECLOSED}
	ErrTimedOut    = &WfError{Code: ETIMEDOUT}
	ErrTooBig      = &WfError{Code: ETOOBIG}
	ErrState       = &WfError{Code: ESTATE}
	ErrUnsupported = &WfError{Code: EUNSUPPORTED}
	ErrConflict    = &WfError{Code: ECONFLICT}
)

// status turns a C status and the captured message into an error.
func status(op string, rc C.int, msg *C.char) error {
	if msg != nil {
		defer C.free(unsafe.Pointer(msg))
	}
	if rc >= 0 {
		return nil
	}
	m := ""
	if msg != nil {
		m = C.GoString(msg)
	}
	return &WfError{Code: int(rc), Op: op, Message: m}
}

var (
	loadOnce  sync.Once
	loadErr   error
	libLoaded bool
	loadedAt  string
)

// Load loads the library now (Open calls it); it is safe to call many times.
// It returns the error of the first attempt on every call.
func Load() error {
	loadOnce.Do(func() { loadErr = load() })
	return loadErr
}

// LibraryPath is the file the library was loaded from ("" before Load).
func LibraryPath() string { _ = Load(); return loadedAt }

func candidates() []string {
	var c []string
	if p := os.Getenv("WFENGINE_LIBRARY"); p != "" {
		return []string{p} // an explicit choice is not second-guessed
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Dir(file)
		c = append(c, filepath.Join(dir, "lib", "libwfengine.so"))
		c = append(c, filepath.Join(dir, "..", "..", "build", "libwfengine.so"))
	}
	if exe, err := os.Executable(); err == nil {
		c = append(c, filepath.Join(filepath.Dir(exe), "libwfengine.so"),
			filepath.Join(filepath.Dir(exe), "lib", "libwfengine.so"))
	}
	c = append(c, "/usr/local/lib/libwfengine.so", "/usr/lib/libwfengine.so",
		"/usr/lib/x86_64-linux-gnu/libwfengine.so")
	c = append(c, "libwfengine.so.0", "libwfengine.so") // system loader path
	return c
}

func load() error {
	var tried []string
	for _, p := range candidates() {
		if strings.Contains(p, "/") {
			if _, err := os.Stat(p); err != nil {
				tried = append(tried, p+": not found")
				continue
			}
		}
		cp := C.CString(p)
		msg := C.wfgo_load(cp)
		C.free(unsafe.Pointer(cp))
		if msg != nil {
			tried = append(tried, p+": "+C.GoString(msg))
			C.free(unsafe.Pointer(msg))
			continue
		}
		v := C.GoString(C.wfgo_version())
		var maj, min, patch int
		if _, err := fmt.Sscanf(v, "%d.%d.%d", &maj, &min, &patch); err != nil || maj != VersionMajor || min != VersionMinor {
			return fmt.Errorf("wfengine: %s is version %q, this binding was written for %d.%d",
				p, v, VersionMajor, VersionMinor)
		}
		libLoaded = true
		loadedAt = p
		return nil
	}
	return fmt.Errorf("wfengine: libwfengine.so not found (set WFENGINE_LIBRARY); looked in:\n  %s",
		strings.Join(tried, "\n  "))
}

// Version is the loaded library's "MAJOR.MINOR.PATCH".
func Version() (string, error) {
	if err := Load(); err != nil {
		return "", err
	}
	return C.GoString(C.wfgo_version()), nil
}

// docBytes turns a document argument into JSON text: string, []byte and
// json.RawMessage are taken as JSON already; nil is "no document" (nil);
// anything else is marshalled with encoding/json.
func docBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	case json.RawMessage:
		return x, nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("wfengine: marshal document: %w", err)
		}
		return b, nil
	}
}

// doc is docBytes as a C string (NULL for nil) the caller frees.
func doc(v any) (*C.char, error) {
	if v == nil {
		return nil, nil
	}
	b, err := docBytes(v)
	if err != nil {
		return nil, err
	}
	return C.CString(string(b)), nil
}

func cfree(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// takeStr copies and frees a string the library returned through char**.
func takeStr(p *C.char) string {
	if p == nil {
		return ""
	}
	s := C.GoString(p)
	C.wfgo_free(unsafe.Pointer(p))
	return s
}

var errNilEngine = errors.New("wfengine: engine is nil")
