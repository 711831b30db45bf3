//! Raw declarations of the wfengine C API (`include/wfengine.h`), loaded at
//! run time with `libloading`. Every function is a field of [`Api`] holding a
//! function pointer; [`api()`] loads the library once per process.
//!
//! Search order: `$WFENGINE_LIBRARY`, then `libwfengine.so` beside the running
//! executable (a bundled copy), then the build tree this crate sits in
//! (`<repo>/build`), then the install prefixes `/usr/local/lib` and `/usr/lib`,
//! then the system loader path (`LD_LIBRARY_PATH`, ld.so.cache).
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Version of the C API these declarations were written for (major, minor).
pub const WF_VERSION_MAJOR: u32 = 0;
pub const WF_VERSION_MINOR: u32 = 1;

pub const WF_OK: c_int = 0;
pub const WF_EINVAL: c_int = -1;
pub const WF_ENOTFOUND: c_int = -2;
pub const WF_EEXIST: c_int = -3;
pub const WF_EBUSY: c_int = -4;
pub const WF_ECLOSED: c_int = -5;
pub const WF_EIO: c_int = -6;
pub const WF_ECORRUPT: c_int = -7;
pub const WF_ENOMEM: c_int = -8;
pub const WF_ETIMEDOUT: c_int = -9;
pub const WF_ETOOBIG: c_int = -10;
pub const WF_ESTATE: c_int = -11;
pub const WF_EUNSUPPORTED: c_int = -12;
pub const WF_EINTERNAL: c_int = -13;
pub const WF_ECONFLICT: c_int = -14;
pub const WF_EFORKED: c_int = -15;

pub const WF_LOG_DEBUG: c_int = 0;
pub const WF_LOG_INFO: c_int = 1;
pub const WF_LOG_WARN: c_int = 2;
pub const WF_LOG_ERROR: c_int = 3;

#[repr(C)]
pub struct wf_engine {
    _p: [u8; 0],
}
#[repr(C)]
pub struct wf_job {
    _p: [u8; 0],
}
#[repr(C)]
pub struct wf_tx {
    _p: [u8; 0],
}
#[repr(C)]
pub struct wf_buf {
    _p: [u8; 0],
}

pub type wf_clock_fn = unsafe extern "C" fn(user: *mut c_void) -> i64;
pub type wf_effect_fn = unsafe extern "C" fn(user: *mut c_void, job: *mut wf_job);
pub type wf_done_fn = unsafe extern "C" fn(user: *mut c_void, status: c_int, id: *const c_char);
pub type wf_saga_fn = unsafe extern "C" fn(
    user: *mut c_void,
    input_json: *const c_char,
    len: usize,
    out: *mut wf_buf,
) -> c_int;
pub type wf_log_fn =
    unsafe extern "C" fn(user: *mut c_void, level: c_int, json_line: *const c_char);

macro_rules! api {
    ($($name:ident : fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The loaded library: one function pointer per C function.
        pub struct Api {
            $(pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            /// Where the library was found.
            pub path: String,
            _lib: libloading::Library,
        }

        impl Api {
            fn from_library(lib: libloading::Library, path: String) -> Result<Api, String> {
                // SAFETY: the symbol types are those of include/wfengine.h.
                unsafe {
                    $(let $name = *lib
                        .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                            concat!(stringify!($name), "\0").as_bytes())
                        .map_err(|e| format!("{path}: missing symbol {}: {e}", stringify!($name)))?;)*
                    Ok(Api { $($name,)* path, _lib: lib })
                }
            }
        }
    };
}

api! {
    wf_version: fn() -> *const c_char;
    wf_strerror: fn(c_int) -> *const c_char;
    wf_last_error: fn() -> *const c_char;
    wf_free: fn(*mut c_void);
    wf_open: fn(*const c_char, *const c_char, *mut *mut wf_engine) -> c_int;
    wf_start: fn(*mut wf_engine) -> c_int;
    wf_drain: fn(*mut wf_engine, i64) -> c_int;
    wf_close: fn(*mut wf_engine) -> c_int;
    wf_set_clock: fn(*mut wf_engine, Option<wf_clock_fn>, *mut c_void) -> c_int;
    wf_wake: fn(*mut wf_engine) -> c_int;
    wf_sync: fn(*mut wf_engine) -> c_int;
    wf_effect_register: fn(*mut wf_engine, *const c_char, *const c_char, Option<wf_effect_fn>, *mut c_void) -> c_int;
    wf_effect_register_builtin: fn(*mut wf_engine, *const c_char, *const c_char) -> c_int;
    wf_job_id: fn(*const wf_job) -> *const c_char;
    wf_job_key: fn(*const wf_job) -> *const c_char;
    wf_job_tenant: fn(*const wf_job) -> *const c_char;
    wf_job_effect: fn(*const wf_job) -> *const c_char;
    wf_job_payload: fn(*const wf_job, *mut usize) -> *const c_char;
    wf_job_metadata: fn(*const wf_job) -> *const c_char;
    wf_job_attempt: fn(*const wf_job) -> c_int;
    wf_job_complete: fn(*mut wf_job, *const c_char) -> c_int;
    wf_job_retry: fn(*mut wf_job, *const c_char, i64) -> c_int;
    wf_job_fail: fn(*mut wf_job, *const c_char) -> c_int;
    wf_enqueue: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_enqueue_batch: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_enqueue_async: fn(*mut wf_engine, *const c_char, Option<wf_done_fn>, *mut c_void) -> c_int;
    wf_submit_async: fn(*mut wf_engine, *const c_char, Option<wf_done_fn>, *mut c_void) -> c_int;
    wf_cancel: fn(*mut wf_engine, *const c_char, *const c_char) -> c_int;
    wf_schedule: fn(*mut wf_engine, *const c_char) -> c_int;
    wf_unschedule: fn(*mut wf_engine, *const c_char, *const c_char) -> c_int;
    wf_buf_set: fn(*mut wf_buf, *const c_char, usize) -> c_int;
    wf_saga_register: fn(*mut wf_engine, *const c_char, *const c_char, Option<wf_saga_fn>, *mut c_void) -> c_int;
    wf_submit: fn(*mut wf_engine, *const c_char) -> c_int;
    wf_saga_get: fn(*mut wf_engine, *const c_char, *const c_char, *const c_char, *mut *mut c_char) -> c_int;
    wf_saga_replay: fn(*mut wf_engine, *const c_char, *const c_char, *const c_char, *const c_char, *mut *mut c_char) -> c_int;
    wf_tx_begin: fn(*mut wf_engine, *mut *mut wf_tx) -> c_int;
    wf_tx_exec: fn(*mut wf_tx, *const c_char, *const c_char, *mut *mut c_char) -> c_int;
    wf_tx_enqueue: fn(*mut wf_tx, *const c_char, *mut *mut c_char) -> c_int;
    wf_tx_schedule: fn(*mut wf_tx, *const c_char) -> c_int;
    wf_tx_submit: fn(*mut wf_tx, *const c_char) -> c_int;
    wf_tx_commit: fn(*mut wf_tx) -> c_int;
    wf_tx_rollback: fn(*mut wf_tx) -> c_int;
    wf_stats: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_metrics: fn(*mut wf_engine, *mut *mut c_char) -> c_int;
    wf_dead_list: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_dead_requeue: fn(*mut wf_engine, *const c_char, *mut i64) -> c_int;
    wf_dead_purge: fn(*mut wf_engine, *const c_char, *mut i64) -> c_int;
    wf_jobs_list: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_job_get: fn(*mut wf_engine, *const c_char, *const c_char, *mut *mut c_char) -> c_int;
    wf_schedules_list: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_sagas_list: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_saga_show: fn(*mut wf_engine, *const c_char, *const c_char, *const c_char, *mut *mut c_char) -> c_int;
    wf_events_list: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_engines_list: fn(*mut wf_engine, *mut *mut c_char) -> c_int;
    wf_check: fn(*mut wf_engine, *const c_char, *mut *mut c_char) -> c_int;
    wf_backup: fn(*mut wf_engine, *const c_char) -> c_int;
    wf_set_logger: fn(*mut wf_engine, c_int, Option<wf_log_fn>, *mut c_void) -> c_int;
    wf_set_default_logger: fn(c_int, Option<wf_log_fn>, *mut c_void) -> c_int;
}

// SAFETY: the library stays loaded for the life of the process and every
// function of the C API is thread-safe.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

const LIB_NAME: &str = "libwfengine.so";

/// The places [`api()`] tries, in order (the last one is the bare name, for
/// the system loader path).
pub fn candidates() -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("WFENGINE_LIBRARY") {
        if !p.is_empty() {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.join(LIB_NAME).to_string_lossy().into_owned());
        }
    }
    // bindings/rust/wfengine-sys -> <repo>/build
    let tree: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "..",
        "build",
        LIB_NAME,
    ]
    .iter()
    .collect();
    out.push(tree.to_string_lossy().into_owned());
    out.push(format!("/usr/local/lib/{LIB_NAME}"));
    out.push(format!("/usr/lib/{LIB_NAME}"));
    out.push(LIB_NAME.to_string());
    out
}

fn load() -> Result<Api, String> {
    let mut tried = Vec::new();
    let explicit = std::env::var_os("WFENGINE_LIBRARY").is_some_and(|p| !p.is_empty());
    for (i, cand) in candidates().into_iter().enumerate() {
        let is_path = cand.contains('/');
        if is_path && !std::path::Path::new(&cand).exists() {
            tried.push(format!("{cand} (not found)"));
            if i == 0 && explicit {
                break; // WFENGINE_LIBRARY names the one to use
            }
            continue;
        }
        // SAFETY: loading runs the library's initialisers, which only set up
        // static state.
        match unsafe { libloading::Library::new(&cand) } {
            Ok(lib) => {
                let api = Api::from_library(lib, cand)?;
                check_version(&api)?;
                return Ok(api);
            }
            Err(e) => {
                tried.push(format!("{cand} ({e})"));
                if i == 0 && explicit {
                    break;
                }
            }
        }
    }
    Err(format!(
        "cannot load {LIB_NAME}; looked in: {}",
        tried.join("; ")
    ))
}

fn check_version(api: &Api) -> Result<(), String> {
    // SAFETY: wf_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr((api.wf_version)()) }
        .to_string_lossy()
        .into_owned();
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    if major != Some(WF_VERSION_MAJOR) || minor != Some(WF_VERSION_MINOR) {
        return Err(format!(
            "{}: version {v}, but this binding was written for {WF_VERSION_MAJOR}.{WF_VERSION_MINOR}",
            api.path
        ));
    }
    Ok(())
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// Loads the library once (see the crate documentation for where it looks)
/// and returns its functions, or a message saying where it looked.
pub fn api() -> Result<&'static Api, String> {
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}
