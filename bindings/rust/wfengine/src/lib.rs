//! Safe Rust API for wfengine, the embeddable durable workflow engine.
//!
//! The engine is `libwfengine.so`, loaded at run time (see [`wfengine_sys`]
//! for where it is looked for). Documents are [`serde_json::Value`]s; every
//! fallible call returns [`Result`] whose [`Error`] carries the status code
//! and `wf_last_error()`'s message, read on the thread of the failing call.
//!
//! Threading: [`Engine`] is `Send + Sync` (every C function is thread-safe on
//! one engine). A [`Job`] is `Send`: complete it from any thread. A [`Tx`] is
//! `Send` (it may move between threads, one call at a time). Callbacks run on
//! the engine's threads inside `catch_unwind`: a panicking effect callback
//! becomes `wf_job_retry` with the panic text; a [`Job`] dropped without an
//! outcome becomes a retry.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use wfengine_sys as sys;

pub mod testing;

/// Status codes of the C API (`WF_E*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Inval,
    NotFound,
    Exist,
    Busy,
    Closed,
    Io,
    Corrupt,
    NoMem,
    TimedOut,
    TooBig,
    State,
    Unsupported,
    Internal,
    Conflict,
    Forked,
    /// The library could not be loaded (not a C status).
    Load,
    /// A status this binding does not know.
    Other(i32),
}

impl Code {
    fn from_status(s: c_int) -> Code {
        match s {
            sys::WF_EINVAL => Code::Inval,
            sys::WF_ENOTFOUND => Code::NotFound,
            sys::WF_EEXIST => Code::Exist,
            sys::WF_EBUSY => Code::Busy,
            sys::WF_ECLOSED => Code::Closed,
            sys::WF_EIO => Code::Io,
            sys::WF_ECORRUPT => Code::Corrupt,
            sys::WF_ENOMEM => Code::NoMem,
            sys::WF_ETIMEDOUT => Code::TimedOut,
            sys::WF_ETOOBIG => Code::TooBig,
            sys::WF_ESTATE => Code::State,
            sys::WF_EUNSUPPORTED => Code::Unsupported,
            sys::WF_EINTERNAL => Code::Internal,
            sys::WF_ECONFLICT => Code::Conflict,
            sys::WF_EFORKED => Code::Forked,
            o => Code::Other(o),
        }
    }
}

/// An error of the engine: the status code, its raw value and the message
/// `wf_last_error()` gave on the calling thread.
#[derive(Debug, Clone)]
pub struct Error {
    pub code: Code,
    pub status: i32,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wfengine: {:?} ({}): {}",
            self.code, self.status, self.message
        )
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn api() -> Result<&'static sys::Api> {
    sys::api().map_err(|m| Error {
        code: Code::Load,
        status: 0,
        message: m,
    })
}

/// Builds the error for `status` from wf_last_error(): call it right after
/// the failing call, on the same thread, with no wf_* call in between.
fn last_error(a: &sys::Api, status: c_int) -> Error {
    // SAFETY: both return static or thread-local NUL-terminated strings.
    let mut message = unsafe { cstr((a.wf_last_error)()) };
    if message.is_empty() {
        message = unsafe { cstr((a.wf_strerror)(status)) };
    }
    Error {
        code: Code::from_status(status),
        status,
        message,
    }
}

fn check(a: &sys::Api, status: c_int) -> Result<()> {
    if status == sys::WF_OK {
        Ok(())
    } else {
        Err(last_error(a, status))
    }
}

unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Takes ownership of a string the library returned through `char **out`.
unsafe fn take_string(a: &sys::Api, p: *mut c_char) -> String {
    let s = cstr(p);
    if !p.is_null() {
        (a.wf_free)(p as *mut c_void);
    }
    s
}

fn c(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error {
        code: Code::Inval,
        status: sys::WF_EINVAL,
        message: format!("string contains a NUL byte: {s:?}"),
    })
}

fn cjson(v: &Value) -> Result<CString> {
    c(&v.to_string())
}

fn parse(s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| Error {
        code: Code::Internal,
        status: sys::WF_EINTERNAL,
        message: format!("library returned invalid JSON ({e}): {s}"),
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic (non-string payload)".to_string()
    }
}

/// The version of the loaded library ("MAJOR.MINOR.PATCH").
pub fn version() -> Result<String> {
    let a = api()?;
    // SAFETY: static string.
    Ok(unsafe { cstr((a.wf_version)()) })
}

/// Outcome of an enqueue: the job id, and whether the key already existed
/// (the id is then the holder's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    pub existing: bool,
}

type EffectFn = dyn Fn(Job) + Send + Sync + 'static;
type SagaFn = dyn Fn(Value) -> std::result::Result<Value, String> + Send + Sync + 'static;
pub type LogFn = dyn Fn(i32, &str) + Send + Sync + 'static;

/// Callback state kept alive until the engine is closed.
enum Keep {
    Effect(#[allow(dead_code)] Box<Box<EffectFn>>),
    Saga(#[allow(dead_code)] Box<Box<SagaFn>>),
    Log(#[allow(dead_code)] Box<Box<LogFn>>),
    Clock(#[allow(dead_code)] Arc<AtomicI64>),
}

/// An open engine. Closed by [`Engine::close`] or, if forgotten, by `Drop`
/// (which logs a failure to stderr).
pub struct Engine {
    e: *mut sys::wf_engine,
    a: &'static sys::Api,
    keep: Mutex<Vec<Keep>>,
    closed: std::sync::atomic::AtomicBool,
}

// SAFETY: every function of the C API is thread-safe on one engine, and
// close races are defined (WF_ECLOSED); the kept callbacks are Send + Sync.
unsafe impl Send for Engine {}
unsafe impl Sync for Engine {}

impl Engine {
    /// Opens (creating if needed) the database at `path`. `options` may be
    /// `Value::Null` or an object (docs/options.md).
    pub fn open(path: &str, options: &Value) -> Result<Engine> {
        let a = api()?;
        let p = c(path)?;
        let o = if options.is_null() {
            None
        } else {
            Some(cjson(options)?)
        };
        let mut e = ptr::null_mut();
        // SAFETY: valid C strings, out pointer.
        let st = unsafe {
            (a.wf_open)(
                p.as_ptr(),
                o.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
                &mut e,
            )
        };
        check(a, st)?;
        Ok(Engine {
            e,
            a,
            keep: Mutex::new(Vec::new()),
            closed: false.into(),
        })
    }

    fn keep(&self, k: Keep) {
        self.keep.lock().unwrap_or_else(|p| p.into_inner()).push(k);
    }

    /// Starts the relay loop (dispatching jobs to providers).
    pub fn start(&self) -> Result<()> {
        check(self.a, unsafe { (self.a.wf_start)(self.e) })
    }

    /// Stops claiming and waits up to `timeout_ms` for in-flight jobs.
    pub fn drain(&self, timeout_ms: i64) -> Result<()> {
        check(self.a, unsafe { (self.a.wf_drain)(self.e, timeout_ms) })
    }

    /// Barrier: every outcome and write queued before is committed.
    pub fn sync(&self) -> Result<()> {
        check(self.a, unsafe { (self.a.wf_sync)(self.e) })
    }

    /// Re-evaluates due jobs and timers now.
    pub fn wake(&self) -> Result<()> {
        check(self.a, unsafe { (self.a.wf_wake)(self.e) })
    }

    /// Closes the engine: drains, stops its threads, closes the database.
    /// Afterwards no callback runs again. `Busy` from an engine thread.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let st = unsafe { (self.a.wf_close)(self.e) };
        if st != sys::WF_OK {
            let err = last_error(self.a, st);
            if err.code == Code::Busy {
                // Called from an engine thread: nothing was closed.
                self.closed.store(false, Ordering::SeqCst);
            }
            return Err(err);
        }
        self.keep.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    /// Reads the engine's clock from `clock` from now on (milliseconds since
    /// the epoch), then wakes the relay. See [`testing::Clock`].
    pub fn set_clock(&self, clock: Arc<AtomicI64>) -> Result<()> {
        unsafe extern "C" fn tramp(user: *mut c_void) -> i64 {
            (*(user as *const AtomicI64)).load(Ordering::SeqCst)
        }
        let user = Arc::as_ptr(&clock) as *mut c_void;
        self.keep(Keep::Clock(clock));
        check(self.a, unsafe {
            (self.a.wf_set_clock)(self.e, Some(tramp), user)
        })
    }

    /// Registers `f` as the provider of `effect` with `policy` (Null ok).
    /// `f` runs on the engine's loop thread and must not block; it receives
    /// the [`Job`] and reports an outcome now or later from any thread.
    pub fn register_effect<F>(&self, effect: &str, policy: &Value, f: F) -> Result<()>
    where
        F: Fn(Job) + Send + Sync + 'static,
    {
        let name = c(effect)?;
        let pol = if policy.is_null() {
            None
        } else {
            Some(cjson(policy)?)
        };
        let boxed: Box<Box<EffectFn>> = Box::new(Box::new(f));
        let user = &*boxed as *const Box<EffectFn> as *mut c_void;
        let st = unsafe {
            (self.a.wf_effect_register)(
                self.e,
                name.as_ptr(),
                pol.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
                Some(effect_tramp),
                user,
            )
        };
        check(self.a, st)?;
        self.keep(Keep::Effect(boxed));
        Ok(())
    }

    /// Registers a built-in provider (`{"type": "http", ...}`, docs/providers.md).
    pub fn register_builtin(&self, effect: &str, config: &Value) -> Result<()> {
        let (n, cf) = (c(effect)?, cjson(config)?);
        check(self.a, unsafe {
            (self.a.wf_effect_register_builtin)(self.e, n.as_ptr(), cf.as_ptr())
        })
    }

    /// Enqueues one job; durable on return. A repeated key is not an error:
    /// `existing` is true and `id` is the holder's.
    pub fn enqueue(&self, job: &Value) -> Result<Enqueued> {
        let j = cjson(job)?;
        let mut out = ptr::null_mut();
        let st = unsafe { (self.a.wf_enqueue)(self.e, j.as_ptr(), &mut out) };
        let err = if st != sys::WF_OK {
            Some(last_error(self.a, st))
        } else {
            None
        };
        let id = unsafe { take_string(self.a, out) };
        match err {
            None => Ok(Enqueued {
                id,
                existing: false,
            }),
            Some(e) if e.code == Code::Exist => Ok(Enqueued { id, existing: true }),
            Some(e) => Err(e),
        }
    }

    /// Enqueues an array of jobs in one transaction (all or nothing).
    pub fn enqueue_batch(&self, jobs: &[Value]) -> Result<Vec<Enqueued>> {
        let j = cjson(&Value::Array(jobs.to_vec()))?;
        let mut out = ptr::null_mut();
        let st = unsafe { (self.a.wf_enqueue_batch)(self.e, j.as_ptr(), &mut out) };
        check(self.a, st)?;
        let v = parse(&unsafe { take_string(self.a, out) })?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| Enqueued {
                        id: x["id"].as_str().unwrap_or_default().to_string(),
                        existing: x["existing"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Pipelined enqueue: validates now, returns without waiting for the
    /// disk; `done` is called once on the engine's notifier thread with the
    /// id (`existing` as in [`Engine::enqueue`]) or the error.
    pub fn enqueue_async<F>(&self, job: &Value, done: F) -> Result<()>
    where
        F: FnOnce(Result<Enqueued>) + Send + 'static,
    {
        self.async_call(job, Box::new(done), false)
    }

    /// Pipelined submit of an event, as [`Engine::enqueue_async`].
    pub fn submit_async<F>(&self, event: &Value, done: F) -> Result<()>
    where
        F: FnOnce(Result<Enqueued>) + Send + 'static,
    {
        self.async_call(event, Box::new(done), true)
    }

    /// [`Engine::enqueue_async`] as a future, for async hosts (any
    /// executor): the job is validated and queued now (bad input is the
    /// `Err` here); the future resolves once it is durable.
    pub fn enqueue_future(&self, job: &Value) -> Result<Completion> {
        let c = Completion::default();
        let c2 = c.clone();
        self.enqueue_async(job, move |r| c2.resolve(r))?;
        Ok(c)
    }

    /// [`Engine::submit_async`] as a future (see [`Engine::enqueue_future`]).
    pub fn submit_future(&self, event: &Value) -> Result<Completion> {
        let c = Completion::default();
        let c2 = c.clone();
        self.submit_async(event, move |r| c2.resolve(r))?;
        Ok(c)
    }

    fn async_call(&self, doc: &Value, done: Box<DoneFn>, event: bool) -> Result<()> {
        let j = cjson(doc)?;
        let user = Box::into_raw(Box::new(done)) as *mut c_void;
        let f = if event {
            self.a.wf_submit_async
        } else {
            self.a.wf_enqueue_async
        };
        let st = unsafe { f(self.e, j.as_ptr(), Some(done_tramp), user) };
        if st != sys::WF_OK {
            let err = last_error(self.a, st);
            // Not accepted: the callback will never run.
            drop(unsafe { Box::from_raw(user as *mut Box<DoneFn>) });
            return Err(err);
        }
        Ok(())
    }

    /// Cancels a job that is not running, by id or else key, in `tenant`.
    pub fn cancel(&self, tenant: &str, id_or_key: &str) -> Result<()> {
        let (t, k) = (c(tenant)?, c(id_or_key)?);
        check(self.a, unsafe {
            (self.a.wf_cancel)(self.e, t.as_ptr(), k.as_ptr())
        })
    }

    /// Creates or replaces a durable schedule (docs/scheduler.md).
    pub fn schedule(&self, schedule: &Value) -> Result<()> {
        let s = cjson(schedule)?;
        check(self.a, unsafe { (self.a.wf_schedule)(self.e, s.as_ptr()) })
    }

    /// Removes a schedule.
    pub fn unschedule(&self, tenant: &str, key: &str) -> Result<()> {
        let (t, k) = (c(tenant)?, c(key)?);
        check(self.a, unsafe {
            (self.a.wf_unschedule)(self.e, t.as_ptr(), k.as_ptr())
        })
    }

    /// Registers a saga whose reducer is `f`: it gets the input document
    /// `{"saga","tenant","correlation_id","state","event"}` and returns the
    /// output `{"state","commands","schedules","cancel_schedules","done"}`.
    /// An `Err` or a panic parks the event as a dead letter.
    pub fn register_saga<F>(&self, saga: &str, spec: &Value, f: F) -> Result<()>
    where
        F: Fn(Value) -> std::result::Result<Value, String> + Send + Sync + 'static,
    {
        let (n, s) = (c(saga)?, cjson(spec)?);
        let boxed: Box<Box<SagaFn>> = Box::new(Box::new(f));
        let user = &*boxed as *const Box<SagaFn> as *mut c_void;
        let st = unsafe {
            (self.a.wf_saga_register)(self.e, n.as_ptr(), s.as_ptr(), Some(saga_tramp), user)
        };
        check(self.a, st)?;
        self.keep(Keep::Saga(boxed));
        Ok(())
    }

    /// Submits an event; durable on return. Returns false if the event id
    /// was already submitted (`WF_EEXIST`).
    pub fn submit(&self, event: &Value) -> Result<bool> {
        let ev = cjson(event)?;
        let st = unsafe { (self.a.wf_submit)(self.e, ev.as_ptr()) };
        match check(self.a, st) {
            Ok(()) => Ok(true),
            Err(e) if e.code == Code::Exist => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A saga instance's state document.
    pub fn saga_get(&self, tenant: &str, saga: &str, correlation_id: &str) -> Result<Value> {
        let (t, s, id) = (c(tenant)?, c(saga)?, c(correlation_id)?);
        let mut out = ptr::null_mut();
        let st =
            unsafe { (self.a.wf_saga_get)(self.e, t.as_ptr(), s.as_ptr(), id.as_ptr(), &mut out) };
        check(self.a, st)?;
        parse(&unsafe { take_string(self.a, out) })
    }

    /// Replays a saga instance through the registered reducer.
    pub fn saga_replay(
        &self,
        tenant: &str,
        saga: &str,
        correlation_id: &str,
        options: &Value,
    ) -> Result<Value> {
        let (t, s, id) = (c(tenant)?, c(saga)?, c(correlation_id)?);
        let o = if options.is_null() {
            None
        } else {
            Some(cjson(options)?)
        };
        let mut out = ptr::null_mut();
        let st = unsafe {
            (self.a.wf_saga_replay)(
                self.e,
                t.as_ptr(),
                s.as_ptr(),
                id.as_ptr(),
                o.as_ref().map_or(ptr::null(), |o| o.as_ptr()),
                &mut out,
            )
        };
        check(self.a, st)?;
        parse(&unsafe { take_string(self.a, out) })
    }

    /// Begins a host transaction; rolled back on `Drop` unless committed.
    pub fn begin(&self) -> Result<Tx<'_>> {
        let mut t = ptr::null_mut();
        check(self.a, unsafe { (self.a.wf_tx_begin)(self.e, &mut t) })?;
        Ok(Tx {
            t,
            a: self.a,
            _e: std::marker::PhantomData,
        })
    }

    fn json_out(
        &self,
        f: unsafe extern "C" fn(*mut sys::wf_engine, *const c_char, *mut *mut c_char) -> c_int,
        filter: &Value,
    ) -> Result<Value> {
        let fl = if filter.is_null() {
            None
        } else {
            Some(cjson(filter)?)
        };
        let mut out = ptr::null_mut();
        let st = unsafe {
            f(
                self.e,
                fl.as_ref().map_or(ptr::null(), |f| f.as_ptr()),
                &mut out,
            )
        };
        check(self.a, st)?;
        parse(&unsafe { take_string(self.a, out) })
    }

    fn count_out(
        &self,
        f: unsafe extern "C" fn(*mut sys::wf_engine, *const c_char, *mut i64) -> c_int,
        filter: &Value,
    ) -> Result<i64> {
        let fl = if filter.is_null() {
            None
        } else {
            Some(cjson(filter)?)
        };
        let mut n = 0i64;
        let st = unsafe {
            f(
                self.e,
                fl.as_ref().map_or(ptr::null(), |f| f.as_ptr()),
                &mut n,
            )
        };
        check(self.a, st)?;
        Ok(n)
    }

    /// Statistics (docs/operations.md); `filter` Null or {"tenant","effect"}.
    pub fn stats(&self, filter: &Value) -> Result<Value> {
        self.json_out(self.a.wf_stats, filter)
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> Result<String> {
        let mut out = ptr::null_mut();
        check(self.a, unsafe { (self.a.wf_metrics)(self.e, &mut out) })?;
        Ok(unsafe { take_string(self.a, out) })
    }

    /// Dead letters matching `filter` (Null: all), newest first.
    pub fn dead_list(&self, filter: &Value) -> Result<Value> {
        self.json_out(self.a.wf_dead_list, filter)
    }

    /// Moves matching dead letters back to the queue; returns how many.
    pub fn dead_requeue(&self, filter: &Value) -> Result<i64> {
        self.count_out(self.a.wf_dead_requeue, filter)
    }

    /// Deletes matching dead letters; returns how many.
    pub fn dead_purge(&self, filter: &Value) -> Result<i64> {
        self.count_out(self.a.wf_dead_purge, filter)
    }

    /// Jobs not yet finished (or the dead letters with `{"state": "dead"}`),
    /// oldest id first: one page `{"jobs": [...], "next_cursor", "now"}`.
    /// Filter keys: `state`, `effect`, `tenant`, `key`, `since`, `until`,
    /// `limit`, `cursor` (see `wf_jobs_list`); an unknown key is
    /// `Code::Inval` naming it. [`Engine::items`] walks every page.
    pub fn jobs_list(&self, filter: &Value) -> Result<Value> {
        self.json_out(self.a.wf_jobs_list, filter)
    }

    /// One job by id (in any tenant when `tenant` is `None`) or else by key
    /// in `tenant` (`None`: ""), with its attempt `history`: pending,
    /// running, dead, or completed and still remembered by its key.
    /// `Code::NotFound` if there is none.
    pub fn job_get(&self, tenant: Option<&str>, id_or_key: &str) -> Result<Value> {
        let t = tenant.map(c).transpose()?;
        let k = c(id_or_key)?;
        let mut out = ptr::null_mut();
        let st = unsafe {
            (self.a.wf_job_get)(
                self.e,
                t.as_ref().map_or(ptr::null(), |t| t.as_ptr()),
                k.as_ptr(),
                &mut out,
            )
        };
        check(self.a, st)?;
        parse(&unsafe { take_string(self.a, out) })
    }

    /// Schedules by (tenant, key): one page `{"schedules": [...],
    /// "next_cursor", "now"}`. Filter keys: `tenant`, `key`, `status`
    /// ("active" | "parked"), `due_before`, `limit`, `cursor`.
    pub fn schedules_list(&self, filter: &Value) -> Result<Value> {
        self.json_out(self.a.wf_schedules_list, filter)
    }

    /// Saga instances (also those whose first events wait in the inbox,
    /// status "new"): one page `{"sagas": [...], "next_cursor"}`. Filter
    /// keys: `tenant`, `saga`, `correlation_id`, `status` ("new" | "active"
    /// | "done" | "parked"), `limit`, `cursor`.
    pub fn sagas_list(&self, filter: &Value) -> Result<Value> {
        self.json_out(self.a.wf_sagas_list, filter)
    }

    /// One saga instance with its state, the events `applied` and those
    /// `pending` or parked. `Code::NotFound` if there is no such instance.
    pub fn saga_show(&self, tenant: &str, saga: &str, correlation_id: &str) -> Result<Value> {
        let (t, s, id) = (c(tenant)?, c(saga)?, c(correlation_id)?);
        let mut out = ptr::null_mut();
        let st =
            unsafe { (self.a.wf_saga_show)(self.e, t.as_ptr(), s.as_ptr(), id.as_ptr(), &mut out) };
        check(self.a, st)?;
        parse(&unsafe { take_string(self.a, out) })
    }

    /// Events, oldest first: one page `{"events": [...], "next_cursor"}`.
    /// Filter keys: `tenant`, `type`, `correlation_id`, `status`
    /// ("unmatched" | "pending" | "parked" | "applied"), `since`, `until`,
    /// `limit`, `cursor`.
    pub fn events_list(&self, filter: &Value) -> Result<Value> {
        self.json_out(self.a.wf_events_list, filter)
    }

    /// Engines registered in the file: `{"engines": [{"boot_id", "pid",
    /// "live", "liveness", "effects", ...}], "now"}`.
    pub fn engines_list(&self) -> Result<Value> {
        let mut out = ptr::null_mut();
        check(self.a, unsafe {
            (self.a.wf_engines_list)(self.e, &mut out)
        })?;
        parse(&unsafe { take_string(self.a, out) })
    }

    /// Integrity and consistency check of one snapshot (`options` Null or
    /// `{"quick": true}`): `{"ok": bool, "checks": [...], "problems":
    /// [{"check", "detail"}]}`. Problems found are `Ok` with `"ok": false`.
    pub fn check(&self, options: &Value) -> Result<Value> {
        self.json_out(self.a.wf_check, options)
    }

    /// Online backup: a consistent copy of the committed state in the new
    /// file `path` (mode 0600) while the engine keeps running.
    /// `Code::Exist` if `path` exists (it is never overwritten).
    pub fn backup<P: AsRef<std::path::Path>>(&self, path: P) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_ref().as_os_str().as_bytes();
        let p = CString::new(bytes).map_err(|_| Error {
            code: Code::Inval,
            status: sys::WF_EINVAL,
            message: format!("path contains a NUL byte: {:?}", path.as_ref()),
        })?;
        check(self.a, unsafe { (self.a.wf_backup)(self.e, p.as_ptr()) })
    }

    /// Every page of a listing, following `next_cursor` (the filter's own
    /// `cursor`, if any, is the starting point). Each item is one page
    /// document as the `*_list` call returns it; iteration ends after the
    /// last page or the first error.
    pub fn pages(&self, listing: Listing, filter: &Value) -> Pages<'_> {
        Pages {
            engine: self,
            listing,
            filter: filter.clone(),
            done: false,
        }
    }

    /// Every item of a listing across all its pages (jobs, schedules,
    /// sagas or events objects), fetching the next page when one is used
    /// up; `limit` in the filter is the page size. Ends after the last
    /// item or the first error.
    ///
    /// ```no_run
    /// use serde_json::{json, Value};
    /// use wfengine::{Engine, Listing};
    ///
    /// # fn main() -> wfengine::Result<()> {
    /// // Beside the engine that runs on the file (another process): read only.
    /// let r = Engine::open("app.db", &json!({"read_only": true}))?;
    /// for job in r.items(Listing::Jobs, &json!({"state": "ready", "effect": "email", "limit": 500})) {
    ///     let job = job?; // an Err (bad filter, closed engine) ends the iteration
    ///     println!("{} {} attempts={}", job["id"], job["key"], job["attempts"]);
    /// }
    /// let dead = r.jobs_list(&json!({"state": "dead", "limit": 10}))?; // one page
    /// let one = r.job_get(None, "42")?; // by id in any tenant, with "history"
    /// let by_key = r.job_get(Some("acme"), "invoice-7")?; // by key in a tenant
    /// let saga = r.saga_show("", "order", "o1")?; // state, applied and pending events
    /// let report = r.check(&Value::Null)?; // report["ok"] == true when healthy
    /// r.backup("/backups/app-2026-12-02.db")?; // Code::Exist if the file is there
    /// # let _ = (dead, one, by_key, saga, report);
    /// # Ok(())
    /// # }
    /// ```
    pub fn items(&self, listing: Listing, filter: &Value) -> Items<'_> {
        Items {
            pages: self.pages(listing, filter),
            buf: std::collections::VecDeque::new(),
        }
    }

    /// Sends log lines at `min_level` (0 debug .. 3 error) or above to `f`
    /// (level, JSON line), on the engine's logger thread.
    pub fn set_logger<F>(&self, min_level: i32, f: F) -> Result<()>
    where
        F: Fn(i32, &str) + Send + Sync + 'static,
    {
        let boxed: Box<Box<LogFn>> = Box::new(Box::new(f));
        let user = &*boxed as *const Box<LogFn> as *mut c_void;
        check(self.a, unsafe {
            (self.a.wf_set_logger)(self.e, min_level, Some(log_tramp), user)
        })?;
        // The previous logger is not called again, but its box is kept until
        // close (it is small) in case the call came from an engine thread.
        self.keep(Keep::Log(boxed));
        Ok(())
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("handle", &self.e).finish()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            eprintln!("wfengine: closing a dropped engine failed: {e}");
            // Its callbacks may still run: leak their state rather than free it.
            std::mem::forget(std::mem::take(
                &mut *self.keep.lock().unwrap_or_else(|p| p.into_inner()),
            ));
        }
    }
}

/// The paged listings of the read API, for [`Engine::pages`] and
/// [`Engine::items`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `wf_jobs_list`
    Jobs,
    /// `wf_schedules_list`
    Schedules,
    /// `wf_sagas_list`
    Sagas,
    /// `wf_events_list`
    Events,
}

impl Listing {
    /// The field of a page that holds its items ("jobs", "schedules", ...).
    pub fn field(self) -> &'static str {
        match self {
            Listing::Jobs => "jobs",
            Listing::Schedules => "schedules",
            Listing::Sagas => "sagas",
            Listing::Events => "events",
        }
    }

    fn list(self, e: &Engine, filter: &Value) -> Result<Value> {
        match self {
            Listing::Jobs => e.jobs_list(filter),
            Listing::Schedules => e.schedules_list(filter),
            Listing::Sagas => e.sagas_list(filter),
            Listing::Events => e.events_list(filter),
        }
    }
}

/// Iterator over the pages of a listing (see [`Engine::pages`]).
pub struct Pages<'e> {
    engine: &'e Engine,
    listing: Listing,
    filter: Value,
    done: bool,
}

impl Iterator for Pages<'_> {
    type Item = Result<Value>;

    fn next(&mut self) -> Option<Result<Value>> {
        if self.done {
            return None;
        }
        let page = match self.listing.list(self.engine, &self.filter) {
            Ok(p) => p,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        // A cursor that does not move would page forever: stop there.
        let same = page["next_cursor"] == self.filter["cursor"];
        match page["next_cursor"].as_str() {
            Some(cursor) if !cursor.is_empty() && !same => {
                if self.filter.is_null() {
                    self.filter = Value::Object(serde_json::Map::new());
                }
                match self.filter.as_object_mut() {
                    Some(m) => {
                        m.insert("cursor".to_string(), Value::String(cursor.to_string()));
                    }
                    None => self.done = true,
                }
            }
            _ => self.done = true,
        }
        Some(Ok(page))
    }
}

impl std::iter::FusedIterator for Pages<'_> {}

/// Iterator over the items of a listing across its pages (see
/// [`Engine::items`]).
pub struct Items<'e> {
    pages: Pages<'e>,
    buf: std::collections::VecDeque<Value>,
}

impl Iterator for Items<'_> {
    type Item = Result<Value>;

    fn next(&mut self) -> Option<Result<Value>> {
        loop {
            if let Some(v) = self.buf.pop_front() {
                return Some(Ok(v));
            }
            let mut page = match self.pages.next()? {
                Ok(p) => p,
                Err(e) => return Some(Err(e)),
            };
            if let Value::Array(a) = page[self.pages.listing.field()].take() {
                self.buf.extend(a);
            }
        }
    }
}

impl std::iter::FusedIterator for Items<'_> {}

/// Sets the process-wide logger that engines opened from now on start with
/// (what `wf_open` itself logs). The closure is kept for the life of the
/// process. `None` removes it.
pub fn set_default_logger(min_level: i32, f: Option<Box<LogFn>>) -> Result<()> {
    let a = api()?;
    let st = match f {
        Some(f) => {
            let user = Box::into_raw(Box::new(f)) as *mut c_void;
            unsafe { (a.wf_set_default_logger)(min_level, Some(log_tramp), user) }
        }
        None => unsafe { (a.wf_set_default_logger)(min_level, None, ptr::null_mut()) },
    };
    check(a, st)
}

/// A future resolved by an async enqueue or submit's completion (see
/// [`Engine::enqueue_future`]). Runtime-agnostic: it wakes the task that
/// polled it from the engine's notifier thread.
#[derive(Clone, Default)]
pub struct Completion {
    inner: Arc<Mutex<CompletionState>>,
}

#[derive(Default)]
struct CompletionState {
    result: Option<Result<Enqueued>>,
    waker: Option<std::task::Waker>,
}

impl Completion {
    fn resolve(&self, r: Result<Enqueued>) {
        let w = {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.result = Some(r);
            g.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl std::future::Future for Completion {
    type Output = Result<Enqueued>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.result.take() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                g.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

type DoneFn = dyn FnOnce(Result<Enqueued>) + Send + 'static;

unsafe extern "C" fn done_tramp(user: *mut c_void, status: c_int, id: *const c_char) {
    let a = match sys::api() {
        Ok(a) => a,
        Err(_) => return,
    };
    // Read the error first thing, before any other wf_* call.
    let err = if status != sys::WF_OK {
        Some(last_error(a, status))
    } else {
        None
    };
    let id = cstr(id);
    let f = Box::from_raw(user as *mut Box<DoneFn>);
    let r = match err {
        None => Ok(Enqueued {
            id,
            existing: false,
        }),
        Some(e) if e.code == Code::Exist => Ok(Enqueued { id, existing: true }),
        Some(e) => Err(e),
    };
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || f(r))) {
        eprintln!(
            "wfengine: async completion callback panicked: {}",
            panic_text(&*p)
        );
    }
}

unsafe extern "C" fn log_tramp(user: *mut c_void, level: c_int, line: *const c_char) {
    let f = &*(user as *const Box<LogFn>);
    let s = CStr::from_ptr(line).to_string_lossy();
    let _ = catch_unwind(AssertUnwindSafe(|| f(level, &s)));
}

unsafe extern "C" fn saga_tramp(
    user: *mut c_void,
    input: *const c_char,
    len: usize,
    out: *mut sys::wf_buf,
) -> c_int {
    let f = &*(user as *const Box<SagaFn>);
    let bytes = std::slice::from_raw_parts(input as *const u8, len);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        f(v)
    }));
    let a = match sys::api() {
        Ok(a) => a,
        Err(_) => return 1,
    };
    match r {
        Ok(Ok(v)) => {
            let s = v.to_string();
            if (a.wf_buf_set)(out, s.as_ptr() as *const c_char, s.len()) == sys::WF_OK {
                0
            } else {
                1
            }
        }
        _ => 1,
    }
}

thread_local! {
    /// Set while an effect callback runs on this thread: a Job dropped by a
    /// panic there is parked here so the trampoline retries it with the text.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    static PANICKED_JOB: Cell<*mut sys::wf_job> = const { Cell::new(ptr::null_mut()) };
}

unsafe extern "C" fn effect_tramp(user: *mut c_void, job: *mut sys::wf_job) {
    let a = match sys::api() {
        Ok(a) => a,
        Err(_) => return,
    };
    let f = &*(user as *const Box<EffectFn>);
    let j = Job { j: job, a };
    IN_CALLBACK.with(|c| c.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| f(j)));
    IN_CALLBACK.with(|c| c.set(false));
    if let Err(p) = r {
        let held = PANICKED_JOB.with(|c| c.replace(ptr::null_mut()));
        if !held.is_null() {
            let msg = CString::new(panic_text(&*p).replace('\0', " ")).unwrap_or_default();
            (a.wf_job_retry)(held, msg.as_ptr(), -1);
        }
    }
}

/// One attempt of a job handed to an effect callback. Report exactly one
/// outcome ([`Job::complete`], [`Job::retry`], [`Job::fail`]), from any
/// thread; dropping it without one retries the job with the policy backoff.
pub struct Job {
    j: *mut sys::wf_job,
    a: &'static sys::Api,
}

// SAFETY: a wf_job may be completed from any thread (one completion).
unsafe impl Send for Job {}

impl Job {
    fn s(&self, f: unsafe extern "C" fn(*const sys::wf_job) -> *const c_char) -> String {
        unsafe { cstr(f(self.j)) }
    }
    pub fn id(&self) -> String {
        self.s(self.a.wf_job_id)
    }
    /// The idempotency key ("" if none): the same on every attempt.
    pub fn key(&self) -> String {
        self.s(self.a.wf_job_key)
    }
    pub fn tenant(&self) -> String {
        self.s(self.a.wf_job_tenant)
    }
    pub fn effect(&self) -> String {
        self.s(self.a.wf_job_effect)
    }
    /// 1-based attempt number.
    pub fn attempt(&self) -> i32 {
        unsafe { (self.a.wf_job_attempt)(self.j) }
    }
    /// The payload (Null if absent or unparsable).
    pub fn payload(&self) -> Value {
        let mut len = 0usize;
        let p = unsafe { (self.a.wf_job_payload)(self.j, &mut len) };
        if p.is_null() {
            return Value::Null;
        }
        let b = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
        serde_json::from_slice(b).unwrap_or(Value::Null)
    }
    pub fn metadata(&self) -> Value {
        serde_json::from_str(&self.s(self.a.wf_job_metadata)).unwrap_or(Value::Null)
    }

    fn finish(self, f: impl FnOnce(*mut sys::wf_job) -> c_int) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        let st = f(this.j);
        check(this.a, st)
    }

    /// Completes the attempt with `result` (Null: no result).
    pub fn complete(self, result: &Value) -> Result<()> {
        let r = if result.is_null() {
            None
        } else {
            Some(cjson(result)?)
        };
        let a = self.a;
        let rp = r.as_ref().map_or(ptr::null(), |r| r.as_ptr());
        // An invalid result is WF_EINVAL and leaves the handle valid: then
        // it is retried via Drop of a rebuilt Job.
        let j = self.j;
        let res = self.finish(|j| unsafe { (a.wf_job_complete)(j, rp) });
        if let Err(e) = &res {
            if e.code == Code::Inval {
                drop(Job { j, a });
            }
        }
        res
    }

    /// Transient failure: runs again after `delay_ms` (negative: the policy
    /// backoff) unless the attempts are exhausted (then a dead letter).
    pub fn retry(self, error: &str, delay_ms: i64) -> Result<()> {
        let e = CString::new(error.replace('\0', " ")).unwrap_or_default();
        let a = self.a;
        self.finish(|j| unsafe { (a.wf_job_retry)(j, e.as_ptr(), delay_ms) })
    }

    /// Permanent failure: the job becomes a dead letter with `error`.
    pub fn fail(self, error: &str) -> Result<()> {
        let e = CString::new(error.replace('\0', " ")).unwrap_or_default();
        let a = self.a;
        self.finish(|j| unsafe { (a.wf_job_fail)(j, e.as_ptr()) })
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if std::thread::panicking() && IN_CALLBACK.with(|c| c.get()) {
            // The effect callback is unwinding: its trampoline retries with
            // the panic text.
            PANICKED_JOB.with(|c| c.set(self.j));
            return;
        }
        let msg: &[u8] = if std::thread::panicking() {
            b"panicked while holding the job\0"
        } else {
            b"job handle dropped without an outcome\0"
        };
        unsafe { (self.a.wf_job_retry)(self.j, msg.as_ptr() as *const c_char, -1) };
    }
}

/// A host transaction: SQL on the engine's database plus jobs, schedules
/// and events, committed together. Rolled back on `Drop` unless committed.
pub struct Tx<'e> {
    t: *mut sys::wf_tx,
    a: &'static sys::Api,
    _e: std::marker::PhantomData<&'e Engine>,
}

// SAFETY: a wf_tx may be used from any thread, one call at a time (&mut).
unsafe impl Send for Tx<'_> {}

impl Tx<'_> {
    /// Runs one SQL statement with `params` (a JSON array or Null); returns
    /// the rows as a JSON array of objects.
    pub fn exec(&mut self, sql: &str, params: &Value) -> Result<Value> {
        let s = c(sql)?;
        let p = if params.is_null() {
            None
        } else {
            Some(cjson(params)?)
        };
        let mut out = ptr::null_mut();
        let st = unsafe {
            (self.a.wf_tx_exec)(
                self.t,
                s.as_ptr(),
                p.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
                &mut out,
            )
        };
        check(self.a, st)?;
        let s = unsafe { take_string(self.a, out) };
        if s.is_empty() {
            Ok(Value::Array(vec![]))
        } else {
            parse(&s)
        }
    }

    /// Enqueues a job inside the transaction; returns its id.
    pub fn enqueue(&mut self, job: &Value) -> Result<String> {
        let j = cjson(job)?;
        let mut out = ptr::null_mut();
        let st = unsafe { (self.a.wf_tx_enqueue)(self.t, j.as_ptr(), &mut out) };
        let err = if st != sys::WF_OK {
            Some(last_error(self.a, st))
        } else {
            None
        };
        let id = unsafe { take_string(self.a, out) };
        match err {
            None => Ok(id),
            Some(e) => Err(e),
        }
    }

    pub fn schedule(&mut self, schedule: &Value) -> Result<()> {
        let s = cjson(schedule)?;
        check(self.a, unsafe {
            (self.a.wf_tx_schedule)(self.t, s.as_ptr())
        })
    }

    pub fn submit(&mut self, event: &Value) -> Result<()> {
        let s = cjson(event)?;
        check(self.a, unsafe { (self.a.wf_tx_submit)(self.t, s.as_ptr()) })
    }

    /// Commits durably (the handle is freed whatever the outcome).
    pub fn commit(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        check(this.a, unsafe { (this.a.wf_tx_commit)(this.t) })
    }

    /// Rolls back.
    pub fn rollback(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        check(this.a, unsafe { (this.a.wf_tx_rollback)(this.t) })
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        unsafe { (self.a.wf_tx_rollback)(self.t) };
    }
}
