/*
 * wfengine.h — public C API of wfengine, an embeddable durable workflow engine:
 * transactional outbox, relay to effect providers, dead letters.
 *
 * Conventions (see docs/abi.md and docs/errors.md):
 *  - Every fallible function returns WF_OK (0) or a negative WF_E* code.
 *    wf_last_error() then describes the failure on the calling thread.
 *  - Documents (options, jobs, filters, policies) are UTF-8 JSON strings.
 *  - Strings returned through `char **out` belong to the caller: free them with
 *    wf_free(). Pointers passed to callbacks are borrowed, valid as documented.
 *  - All functions are thread-safe on one engine. A wf_tx may move between
 *    threads but takes one call at a time. See docs/semantics.md, "Rules for
 *    hosts", for close, transactions, loggers and fork().
 *  - Times are integers in milliseconds since the Unix epoch (`*_ms`), or
 *    RFC 3339 strings inside JSON documents.
 */
#ifndef WFENGINE_H
#define WFENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#if defined(WF_BUILDING)
#define WF_API __declspec(dllexport)
#else
#define WF_API
#endif
#elif defined(__GNUC__)
#define WF_API __attribute__((visibility("default")))
#else
#define WF_API
#endif

#define WF_VERSION_MAJOR 0
#define WF_VERSION_MINOR 1
#define WF_VERSION_PATCH 0

/* ------------------------------------------------------------------ status */

#define WF_OK 0
#define WF_EINVAL (-1)        /* bad argument, malformed or invalid document */
#define WF_ENOTFOUND (-2)     /* no such job, key, dead letter, ... */
#define WF_EEXIST (-3)        /* idempotency key already seen; existing id returned */
#define WF_EBUSY (-4)         /* resource busy (running job, tx open on thread) */
#define WF_ECLOSED (-5)       /* engine draining or closed */
#define WF_EIO (-6)           /* I/O error from the database */
#define WF_ECORRUPT (-7)      /* database file is corrupt or not a wfengine file */
#define WF_ENOMEM (-8)        /* out of memory */
#define WF_ETIMEDOUT (-9)     /* operation timed out */
#define WF_ETOOBIG (-10)      /* over a size or depth limit */
#define WF_ESTATE (-11)       /* object already finished (e.g. late completion) */
#define WF_EUNSUPPORTED (-12) /* feature not available in this build */
#define WF_EINTERNAL (-13)    /* bug: please report */
#define WF_ECONFLICT (-14)    /* lost a compare-and-set: the object changed meanwhile, retry */
#define WF_EFORKED (-15)      /* engine or wf_tx inherited across fork(): open after fork */

/* Log levels for wf_set_logger. */
#define WF_LOG_DEBUG 0
#define WF_LOG_INFO 1
#define WF_LOG_WARN 2
#define WF_LOG_ERROR 3

typedef struct wf_engine wf_engine;
typedef struct wf_job wf_job;
typedef struct wf_tx wf_tx;
typedef struct wf_buf wf_buf;

/* ------------------------------------------------------------------- misc */

/* "MAJOR.MINOR.PATCH" of the loaded library. Static string. */
WF_API const char *wf_version(void);

/* Static English text for a status code. Never NULL. */
WF_API const char *wf_strerror(int status);

/* Thread-local human message about the last call on the calling thread that
 * returns a status: every such call clears it on entry, so it is "" after a
 * success and names the field, key or limit after a failure. Valid until the
 * next wf_* call on this thread. Never NULL. */
WF_API const char *wf_last_error(void);

/* Frees a string returned by the library through `char **out`. NULL ok. */
WF_API void wf_free(void *p);

/* ----------------------------------------------------------------- engine */

/* Opens (creating if needed, mode 0600) the SQLite database at `path` in WAL
 * mode, applies schema migrations and recovers jobs leased by engines that are
 * gone. `options_json` may be NULL or "{}"; unknown keys are an error (see
 * docs/options.md). The writer thread starts here, so enqueueing works before
 * wf_start. On success *out is the engine; free it with wf_close. What it
 * logs goes to the default logger (wf_set_default_logger) and is delivered
 * before it returns.
 *
 * Files: a new path, a wfengine file (an older schema is migrated), or the
 * host's own SQLite database (the engine adds its wf_* tables and switches
 * the file to WAL; the host's tables and PRAGMA user_version are never
 * touched: the engine's schema version is kept in its table wf_meta).
 * Refused before anything in the file changes, with WF_ECORRUPT and a
 * wf_last_error() naming the reason: not a SQLite database, a newer wfengine
 * schema, tables named wf_* without a wfengine schema version. ":memory:",
 * "" and "file:" URIs are WF_EINVAL and create no file.
 *
 * Open engines in the process that uses them: an engine inherited across
 * fork() returns WF_EFORKED in the child, and so does wf_open there of the
 * file such an engine has open (pre-fork servers: open in each worker, after
 * the fork).
 *
 * Option {"read_only": true} (inspection, e.g. wfctl): opens an existing
 * wfengine file for reading only, also while another process runs an engine
 * on it. No writer or other thread starts, nothing is migrated or
 * registered, nothing in the file changes. A missing file is WF_ENOTFOUND
 * (never created); a file that is not a wfengine database, or has a newer
 * schema, WF_ECORRUPT; an older schema (not migrated yet) WF_EUNSUPPORTED.
 * Every call that would write (enqueue, submit, schedules, dead-letter
 * requeue/purge, wf_tx_begin, wf_start, ...) returns WF_ESTATE; the reads
 * (wf_stats, wf_metrics, wf_dead_list, the read API below, wf_check,
 * wf_backup) work; wf_sync and wf_drain return at once; wf_close frees. With
 * an encrypted database give the same encryption_key. */
WF_API int wf_open(const char *path, const char *options_json, wf_engine **out);

/* Starts the relay loop thread: claims ready jobs, dispatches them to
 * registered providers, arms timers, handles timeouts. WF_ESTATE if already
 * started. */
WF_API int wf_start(wf_engine *e);

/* Stops claiming new jobs and waits up to `timeout_ms` (real time) for the
 * in-flight ones to complete and for the host to complete every handle the
 * engine gave up on (timed out, lease lost); when it returns WF_OK their
 * outcomes are committed (as after wf_sync). Afterwards new enqueues return
 * WF_ECLOSED. WF_ETIMEDOUT if jobs are still in flight or such handles are
 * still held at the deadline (the message says how many of each; in-flight
 * jobs stay leased and are released by wf_close). WF_EBUSY when called from
 * a provider callback (it would wait for itself). */
WF_API int wf_drain(wf_engine *e, int64_t timeout_ms);

/* Drains (bounded by the `drain_timeout_ms` option), returns leases of jobs
 * still in flight to the queue (recorded as interrupted), stops the threads
 * and closes the database. Job handles the host still holds stay valid
 * memory: completing one afterwards returns WF_ESTATE and frees it (complete
 * them; a handle never completed is leaked). NULL is ok.
 * May race with calls on other threads: from the moment it starts, new calls
 * on `e` return WF_ECLOSED; it waits for the calls already running (a wf_drain
 * elsewhere returns WF_ECLOSED at once) and for an open wf_tx at most its
 * tx_timeout_ms. When it returns, no engine thread or callback runs any more
 * and the logger got every line. The handle's small shell is never freed (a
 * tombstone): a second wf_close and every later call on `e` return
 * WF_ECLOSED. WF_EBUSY (and nothing is closed) when called from an engine
 * thread (provider callback, saga reducer, logger) or from the thread that
 * made the last call on the engine's open wf_tx. On an engine inherited
 * across fork() it returns WF_OK and only marks the handle closed (no thread,
 * database write or lease of the parent is touched; the memory is left). */
WF_API int wf_close(wf_engine *e);

/* Injectable clock (tests, simulations): the engine reads the wall clock
 * ("now" for stored instants: run_at, retry times, schedule due times,
 * lease expiry, dead_at) from `fn` instead of the system clock (its values
 * are clamped to +-2^62 ms). NULL restores the system clock. Call wf_wake
 * after moving the clock so timers are re-evaluated. Intervals (attempt
 * timeouts, lease renewal, poll_ms, abandon_after_ms) run on a monotonic
 * clock that this does not move. */
typedef int64_t (*wf_clock_fn)(void *user);
WF_API int wf_set_clock(wf_engine *e, wf_clock_fn fn, void *user);

/* Makes the relay re-evaluate due jobs, timeouts and timers now (after moving
 * an injected clock, or after another process wrote to the database). */
WF_API int wf_wake(wf_engine *e);

/* Barrier: returns once every job outcome reported (wf_job_complete/retry/
 * fail) and every write queued before this call is committed. Useful before
 * reading wf_stats in tests and before a planned shutdown of the host. */
WF_API int wf_sync(wf_engine *e);

/* ------------------------------------------------------ effect providers */

/* Called on the engine's loop thread for each attempt of a job. `job` stays
 * valid until it is completed with exactly one of wf_job_complete, wf_job_retry
 * or wf_job_fail (from any thread, now or later), whatever the engine did
 * meanwhile (timeout, lease reclaimed by another engine, drain, close);
 * afterwards it is gone. The callback must not block: hand slow work to your
 * own threads. See docs/semantics.md, "Rules for hosts". */
typedef void (*wf_effect_fn)(void *user, wf_job *job);

/* Registers the host callback serving `effect`. `policy_json` (NULL ok):
 * {"timeout_ms", "max_attempts", "backoff": {"base_ms","cap_ms","multiplier",
 * "jitter": "full"|"none"}, "concurrency", "tenant_concurrency",
 * "circuit": {"failure_ratio","window","min_attempts","cooldown_ms"},
 * "max_interruptions", "abandon_after_ms"} (docs/options.md).
 * Registering an effect twice is WF_EEXIST. May be called before or after
 * wf_start. Jobs for effects that nobody registered wait, they are not burnt.
 * `effect` must be 1 to 200 bytes of valid UTF-8 (else WF_EINVAL). */
WF_API int wf_effect_register(wf_engine *e, const char *effect, const char *policy_json,
                              wf_effect_fn fn, void *user);

/* Built-in providers: one JSON document names the provider ("type") and carries
 * its configuration and the effect policy keys above (docs/providers.md).
 * An unknown type is WF_EUNSUPPORTED; a bad configuration WF_EINVAL naming the
 * key. May be called before or after wf_start.
 * "http": {"type":"http", "url" (template: {tenant} {key} {id} {payload.f}),
 * "method", "headers", "connect_timeout_ms", "secrets": ["whsec_..." |
 * "env:NAME" | "file:/path"] (Standard Webhooks signing; resolved here, never
 * logged or stored), "allow_private_networks" (SSRF guard), "ca_file",
 * "result_headers", "max_body_bytes", "max_retry_after_ms", "user_agent"} plus
 * the policy keys ("timeout_ms" also bounds the request, "concurrency" the
 * requests in flight). 2xx completes the job with {"status","headers","body"};
 * 408/425/429/5xx, timeouts and connection errors retry (Retry-After is the
 * delay); 3xx, other 4xx and SSRF refusals fail it. */
WF_API int wf_effect_register_builtin(wf_engine *e, const char *effect, const char *config_json);

/* Accessors: borrowed strings, valid while `j` is valid. */
WF_API const char *wf_job_id(const wf_job *j);
WF_API const char *wf_job_key(const wf_job *j); /* same on every attempt; "" if none */
WF_API const char *wf_job_tenant(const wf_job *j);
WF_API const char *wf_job_effect(const wf_job *j);
WF_API const char *wf_job_payload(const wf_job *j, size_t *len); /* JSON text */
WF_API const char *wf_job_metadata(const wf_job *j);             /* JSON object */
/* When the job carries a W3C trace context (its "traceparent", from the job
 * document, its metadata or the saga event that emitted it), the metadata
 * seen here holds "traceparent" with a new span id for this attempt,
 * "parent_span_id" (the stored span) and "tracestate": see docs/tracing.md. */
WF_API int wf_job_attempt(const wf_job *j); /* 1-based */

/* Completes the attempt successfully. `result_json` may be NULL (an invalid
 * one is WF_EINVAL and `j` stays valid). Returns WF_ESTATE, changing nothing,
 * if the engine had given up on the attempt: it timed out (the job was or
 * will be retried), its lease was lost (another engine reclaimed the job), or
 * the engine was closed (the job went back to the queue). `j` is gone either
 * way. WF_OK: the outcome is committed asynchronously (batched; wf_sync is
 * the barrier); if the process dies first, the job is delivered again. */
WF_API int wf_job_complete(wf_job *j, const char *result_json);

/* Transient failure: the job runs again after `delay_ms` (at most 2^45 ms;
 * longer delays are cut to it), or after the policy's backoff when
 * `delay_ms` < 0, unless its attempts are exhausted, in which case it becomes
 * a dead letter. WF_ESTATE as for wf_job_complete. `j` is gone afterwards.
 * `error` (NULL ok) is stored, logged and, for a saga's job, put into the
 * <effect>.failed event: invalid UTF-8 in it is replaced with U+FFFD and it
 * is cut to 64 KiB, never refused. */
WF_API int wf_job_retry(wf_job *j, const char *error, int64_t delay_ms);

/* Permanent failure: the job becomes a dead letter with `error` (treated as
 * in wf_job_retry: invalid UTF-8 replaced with U+FFFD, cut to 64 KiB).
 * WF_ESTATE as for wf_job_complete. `j` is gone afterwards. */
WF_API int wf_job_fail(wf_job *j, const char *error);

/* ------------------------------------------------------------------ outbox */

/* Enqueues one job: {"effect", "payload"?, "tenant"?, "key"?, "run_at"? |
 * "delay_ms"?, "priority"?, "max_attempts"?, "metadata"?, "traceparent"?,
 * "tracestate"?} (other top-level fields go into metadata; a malformed
 * traceparent / tracestate, there or in metadata, is WF_EINVAL). Returns after the
 * commit is durable. *id_out (may be NULL) receives the job id; with
 * WF_EEXIST it receives the id of the job that already holds the key. A
 * ready job of an effect with free slots may be written already claimed by
 * this engine and be running (attempt 1) when the call returns (option
 * claim_on_insert, docs/semantics.md "Delivery"). */
WF_API int wf_enqueue(wf_engine *e, const char *job_json, char **id_out);

/* Enqueues a JSON array of jobs in one transaction: all or nothing. Jobs whose
 * key already exists are not inserted and do not fail the batch;
 * *ids_json_out (may be NULL) receives a JSON array with one entry per input:
 * {"id": "...", "existing": bool}. */
WF_API int wf_enqueue_batch(wf_engine *e, const char *jobs_json_array, char **ids_json_out);

/* Pipelined enqueue. Validates `job_json` at once (bad input: the status is
 * returned, wf_last_error() says why, `cb` is never called, nothing is
 * written), queues the write and returns WF_OK without waiting for the disk.
 * Every accepted call then gets exactly one `cb(user, status, id)`:
 *   WF_OK       the job is durable (same commit rules as wf_enqueue; with
 *               durability "full" the commit was fsynced before the call);
 *   WF_EEXIST   the key already existed; `id` is the holder's id;
 *   other       the write failed (WF_EIO, WF_ECLOSED, ...); `id` is NULL.
 * `id` is valid during the callback only. On a failure, wf_last_error()
 * called first thing inside the callback describes it (it is the notifier
 * thread's last error until the callback makes another wf_* call).
 * Callbacks run on the engine's notifier thread (one per engine, started by
 * the first async call), one at a time, in the order the calls were accepted
 * (so in submission order per calling thread); jobs accepted together are
 * committed together, and one job failing does not fail the others. `cb`
 * may be NULL (fire and forget). The callback may call any wf_* function,
 * including wf_enqueue_async, except wf_close of this engine (WF_EBUSY); it
 * should return quickly: while it runs, later callbacks wait.
 * Back pressure: at most `async_queue_max` calls (option, default 10000)
 * holding at most `async_queue_bytes` of documents (default 64 MiB) may be
 * accepted and not yet called back. When the queue is full the call blocks
 * until there is room, except on one of this engine's threads (its
 * provider, reducer, logger or async callbacks), where it returns WF_EBUSY
 * at once instead, so a callback can never wait for itself.
 * wf_sync waits for the commit and the callbacks of every call accepted
 * before it (not when called from a callback). wf_close first lets every
 * accepted write commit and every callback run (an accepted write is never
 * dropped); calls after wf_close began return WF_ECLOSED, no callback. */
typedef void (*wf_done_fn)(void *user, int status, const char *id);
WF_API int wf_enqueue_async(wf_engine *e, const char *job_json, wf_done_fn cb, void *user);

/* The same for an event (document as wf_submit): `id` is the event's
 * event_id for WF_OK and for WF_EEXIST (already submitted), NULL on other
 * failures. Events and jobs share the queue and its order. */
WF_API int wf_submit_async(wf_engine *e, const char *event_json, wf_done_fn cb, void *user);

/* Cancels a job that is not running, by id or else by key, in `tenant` (NULL
 * means ""). WF_ENOTFOUND if there is none, WF_EBUSY if it is running. */
WF_API int wf_cancel(wf_engine *e, const char *tenant, const char *id_or_key);

/* --------------------------------------------------------------- schedules */

/* Creates or atomically replaces the durable timer `key` (per tenant):
 * {"key", "tenant"?, "at" (ms or RFC 3339) | "delay_ms" | "cron", "tz"? (IANA,
 * default "UTC"), "catch_up"? ("latest" default | "all" | "none"),
 * "catch_up_max"? (for "all", default 100), "job": {...} | "event": {...}}.
 * When it fires it enqueues the job or submits the event, with a key / event
 * id derived from (schedule key, due time), so a firing is never doubled.
 * A firing that fails because of the schedule itself (e.g. its job is over a
 * lowered max_payload_bytes) parks it (wf_stats schedules.parked); calling
 * wf_schedule again with the same key replaces and un-parks it.
 * Durable on return. See docs/scheduler.md. */
WF_API int wf_schedule(wf_engine *e, const char *schedule_json);

/* Removes a schedule (parked ones too). WF_ENOTFOUND if there is none. */
WF_API int wf_unschedule(wf_engine *e, const char *tenant, const char *key);

/* ------------------------------------------------------------------- sagas */

/* A saga reducer: pure and deterministic. `input_json` is
 * {"saga","tenant","correlation_id","state": <json|null>, "event": {...}};
 * the reducer writes {"state", "commands": [job...], "schedules": [...],
 * "cancel_schedules": [key...], "done": bool} with wf_buf_set and returns 0.
 * A non-zero return or invalid output parks the event as a dead letter and
 * leaves the state untouched. Runs on the engine's loop thread. */
typedef int (*wf_saga_fn)(void *user, const char *input_json, size_t len, wf_buf *out);

/* Copies `len` bytes of `data` into the reducer's output buffer. */
WF_API int wf_buf_set(wf_buf *out, const char *data, size_t len);

/* Registers a saga. `spec_json`: {"start": [types], "on": [types],
 * "correlation": "correlation_id"} — `start` types create the instance if
 * needed, `on` types apply only to existing instances, `correlation` names the
 * envelope field (dotted path allowed, e.g. "payload.order_id"). Outcome
 * events of jobs the saga emitted (`<effect>.completed` / `<effect>.failed`)
 * are always delivered to it. Register sagas before submitting their events.
 * `saga` must be 1 to 200 bytes of valid UTF-8 (else WF_EINVAL). */
WF_API int wf_saga_register(wf_engine *e, const char *saga, const char *spec_json, wf_saga_fn fn,
                            void *user);

/* Submits an event {"event_id", "type", "tenant"?, "correlation_id"?,
 * "payload"?, "traceparent"?, "tracestate"?, "occurred_at"?} (a malformed
 * W3C traceparent / tracestate is WF_EINVAL; the context goes on to the
 * jobs the saga step emits, docs/tracing.md): durable on return,
 * deduplicated by (tenant, event_id) with WF_EEXIST. Events that no
 * registered saga takes are kept and counted as unmatched. */
WF_API int wf_submit(wf_engine *e, const char *event_json);

/* The state of a saga instance as JSON: {"state", "status": "active"|"done",
 * "version", "parked": bool, "pending": n}. WF_ENOTFOUND if none. */
WF_API int wf_saga_get(wf_engine *e, const char *tenant, const char *saga,
                       const char *correlation_id, char **state_json_out);

/* Controlled replay: re-runs the instance's applied events, in order, through
 * the currently registered reducer from a null state, emitting no jobs,
 * schedules or events. `options_json`: {"commit": false} by default; with
 * true the replayed state replaces the stored one (reducer upgrades) and the
 * instance's version goes up by one, so a live step computed from the state
 * before the replay is not committed but computed again from the replayed
 * state. WF_ECONFLICT (nothing written; run it again) when a step of the
 * instance committed while the replay ran. *state_json_out receives
 * {"state", "events": n, "done": bool}. Strings must be valid UTF-8. */
WF_API int wf_saga_replay(wf_engine *e, const char *tenant, const char *saga,
                          const char *correlation_id, const char *options_json,
                          char **state_json_out);

/* ------------------------------------------------------ host transaction */

/* Begins a write transaction on the engine's database, open until
 * wf_tx_commit or wf_tx_rollback. The handle may be used from any thread, one
 * call at a time (e.g. begun on one thread and committed on another). While it
 * is open, other writers queue behind it: keep it short. On the thread that
 * made the last call on it (this one, or the last wf_tx_* caller) every call
 * that would wait on the writer (non-tx writes, wf_sync, wf_drain, wf_close,
 * wf_tx_begin) returns WF_EBUSY. A transaction still open `tx_timeout_ms`
 * (option, default 30000) after it began is rolled back by the engine; from
 * then on every wf_tx_* call on it returns WF_ESTATE, and it only needs
 * freeing with wf_tx_rollback (or wf_tx_commit, which returns WF_ESTATE). Calls
 * on a wf_tx inherited across fork() return WF_EFORKED. */
WF_API int wf_tx_begin(wf_engine *e, wf_tx **out);

/* Executes one SQL statement with bound parameters `params_json` (a JSON
 * array, NULL ok). Result rows (NULL ok) come back as a JSON array of objects.
 * Writing or creating the engine's own tables (wf_*), transaction control,
 * ATTACH and PRAGMA are refused with WF_EINVAL. Text values that are not
 * UTF-8 come back with U+FFFD (blobs come back as hex). */
WF_API int wf_tx_exec(wf_tx *t, const char *sql, const char *params_json, char **rows_json_out);

/* Enqueues a job inside the transaction (same document as wf_enqueue). */
WF_API int wf_tx_enqueue(wf_tx *t, const char *job_json, char **id_out);

/* Creates or replaces a schedule inside the transaction. */
WF_API int wf_tx_schedule(wf_tx *t, const char *schedule_json);

/* Submits an event inside the transaction. */
WF_API int wf_tx_submit(wf_tx *t, const char *event_json);

/* Commits durably. Frees `t`, whether it succeeds or not (WF_ESTATE, nothing
 * committed, if it was rolled back at tx_timeout_ms), except WF_EFORKED. */
WF_API int wf_tx_commit(wf_tx *t);

/* Rolls back. Frees `t`, also after the engine rolled it back at
 * tx_timeout_ms or was closed (then it only frees). NULL ok. */
WF_API int wf_tx_rollback(wf_tx *t);

/* ------------------------------------------------------------- operations */

/* Statistics as JSON (see docs/operations.md). `filter_json` NULL or
 * {"tenant"?, "effect"?}; any other key is WF_EINVAL naming it. "tenant"
 * narrows the outbox, dead letters, schedules, sagas and events; "effect" the
 * outbox, dead letters and engine.effects; engine counters are never
 * filtered. schedules.parked counts schedules whose firing failed
 * (schedules.parked_list names them). Reads a committed snapshot; never
 * blocks writers. */
WF_API int wf_stats(wf_engine *e, const char *filter_json, char **json_out);

/* Prometheus text exposition (format 0.0.4) of the same figures plus
 * counters and histograms: names start with wfengine_ (e.g.
 * wfengine_jobs_completed_total{effect}, wfengine_effect_duration_seconds,
 * wfengine_outbox_jobs{effect,state}); the tenant label only with the option
 * metrics_by_tenant. Reference and alert rules: docs/operations.md. With the
 * option admin_listen the engine serves it itself at GET /metrics, with
 * /health, /ready and /info (the bound port: wf_stats engine.admin_port). */
WF_API int wf_metrics(wf_engine *e, char **text_out);

/* Dead letters matching the filter {"tenant"?, "effect"?, "ids"?: [...],
 * "since"?, "until"? (dead_at, ms or RFC 3339), "limit"?}, newest first, each
 * with its attempt history. */
WF_API int wf_dead_list(wf_engine *e, const char *filter_json, char **json_out);

/* Moves matching dead letters back to the queue (ready now, failure count
 * reset). A dead letter whose key is held again by a pending job stays dead.
 * *count_out (may be NULL) receives how many were re-queued. */
WF_API int wf_dead_requeue(wf_engine *e, const char *filter_json, int64_t *count_out);

/* Deletes matching dead letters and their history. */
WF_API int wf_dead_purge(wf_engine *e, const char *filter_json, int64_t *count_out);

/* ---------------------------------------------------------------- read API
 *
 * Read-only listings for operators and tools (wfctl). Each reads one
 * committed snapshot on the engine's API read connection: it never waits for
 * or delays the writer, takes no lease, and works on an engine opened with
 * {"read_only": true} while another process runs the engine on the file.
 * The result is one JSON document in *json_out (free it with wf_free).
 * Payloads, states and events are shown decrypted (open with the
 * encryption_key). Filters are JSON objects (NULL or "{}": no filter); an
 * unknown key or a bad value is WF_EINVAL naming the key. Times are ms since
 * the epoch or RFC 3339 strings. Listings return at most "limit" (default
 * 100, 1..10000) items and "next_cursor": a string to pass as "cursor" for
 * the next page, or null on the last page. */

/* Jobs not yet finished (wf_jobs), oldest id first. Filter {"state"?:
 * "ready" | "scheduled" (run_at in the future) | "running" | "pending"
 * (ready or scheduled) | "dead" (the dead letters instead, same shape with
 * "reason" and "dead_at"), "effect"?, "tenant"?, "key"?, "since"?, "until"?
 * (created_at, since <= t < until), "limit"?, "cursor"?}. Output
 * {"jobs": [{"id", "tenant", "effect", "key", "state", "payload",
 * "metadata", "priority", "run_at", "attempts", "failures", "max_attempts",
 * "lease_owner" (boot id), "lease_until", "started_at", "last_error",
 * "origin", "created_at", "interruptions"}], "next_cursor", "now"}. */
WF_API int wf_jobs_list(wf_engine *e, const char *filter_json, char **json_out);

/* One job by id (in any tenant when `tenant` is NULL) or else by key in
 * `tenant` (NULL means ""): a pending or running job, a dead letter, or a
 * completed job still remembered by its key (state "completed", within
 * dedupe_window_ms), with "history" (its attempts; empty for a completed
 * job, whose history is deleted at completion). WF_ENOTFOUND if none. */
WF_API int wf_job_get(wf_engine *e, const char *tenant, const char *id_or_key, char **json_out);

/* Schedules, by (tenant, key). Filter {"tenant"?, "key"?, "status"?:
 * "active" | "parked", "due_before"?, "limit"?, "cursor"?}. Output
 * {"schedules": [{"tenant", "key", "cron", "tz", "catch_up",
 * "catch_up_max", "target", "job" | "event", "next_due", "fired",
 * "last_due", "origin", "created_at", "status", "parked_reason",
 * "parked_at"}], "next_cursor", "now"}. */
WF_API int wf_schedules_list(wf_engine *e, const char *filter_json, char **json_out);

/* Saga instances, by (tenant, saga, correlation_id), including those whose
 * first events wait in the inbox (status "new"). Filter {"tenant"?,
 * "saga"?, "correlation_id"?, "status"?: "new" | "active" | "done" |
 * "parked" (has a parked event), "limit"?, "cursor"?}. Output {"sagas":
 * [{"tenant", "saga", "correlation_id", "status", "version", "created_at",
 * "updated_at", "pending" (events waiting), "parked" (events parked)}],
 * "next_cursor"}. */
WF_API int wf_sagas_list(wf_engine *e, const char *filter_json, char **json_out);

/* One saga instance: {"tenant", "saga", "correlation_id", "status",
 * "state", "version", "created_at", "updated_at", "applied": [{"n", "seq",
 * "event_id", "type", "received_at", "event"}], "pending": [{"inbox_seq",
 * "seq", "start", "status": "pending" | "parked", "error", "event_id",
 * "type", "received_at", "event"}]} (an applied event purged by retention
 * shows nulls). WF_ENOTFOUND if there is no such instance. */
WF_API int wf_saga_show(wf_engine *e, const char *tenant, const char *saga,
                        const char *correlation_id, char **json_out);

/* Events, oldest first. Filter {"tenant"?, "type"?, "correlation_id"?,
 * "status"?: "unmatched" (no saga took it) | "pending" (waiting for a saga
 * step) | "parked" (its step failed; a dead letter) | "applied",
 * "since"?, "until"? (received_at), "limit"?, "cursor"?}. Output {"events":
 * [{"seq", "tenant", "event_id", "type", "correlation_id", "event",
 * "received_at", "routed", "status"}], "next_cursor"}. */
WF_API int wf_events_list(wf_engine *e, const char *filter_json, char **json_out);

/* Engines registered in the file (one row per open engine, "boot"):
 * {"engines": [{"boot_id", "pid", "hostname", "started_at", "heartbeat_at",
 * "lock_slot", "live": bool, "liveness": "this engine" | "lock" (its
 * liveness lock is held) | "heartbeat" (no lock to test: heartbeat within
 * two lease_ms), "effects": [names it registered], "circuits": {effect:
 * {"state": "open" | "half_open", "until": ms}} (only effects whose circuit
 * breaker is not closed; "until" is when the open circuit lets a probe
 * through)}], "now"}. */
WF_API int wf_engines_list(wf_engine *e, char **json_out);

/* Integrity and consistency check on one snapshot: SQLite's integrity_check
 * (quick_check with options {"quick": true}), the schema version, the
 * maintained counts (wf_job_counts) against the rows,
 * leases against job states, dead letters not also pending, saga inbox rows
 * pointing at existing events. Output {"ok": bool, "checks": [names],
 * "problems": [{"check", "detail"}]}; WF_OK whether or not problems were
 * found. */
WF_API int wf_check(wf_engine *e, const char *options_json, char **json_out);

/* Online backup: writes a consistent copy of the committed state to the new
 * file `path` (mode 0600; VACUUM INTO from a read snapshot, synced) while
 * the engine keeps running. WF_EEXIST if `path` exists (never overwritten).
 * The copy is a wfengine database (still encrypted if the original is);
 * restore by opening it (see docs/operations.md, "Backup and restore"). */
WF_API int wf_backup(wf_engine *e, const char *path);

/* Receives one JSON object per line at `min_level` or above, in order, from
 * the engine's own logger thread (never concurrently; never from a thread the
 * API waits on). `json_line` is borrowed for the call. The logger may call any
 * wf_* function, e.g. wf_enqueue to raise an alert, except wf_close of its
 * engine (WF_EBUSY). Lines wait in a queue of 4096; when it is full they are
 * dropped and counted (a "log lines dropped" warning follows), the engine never
 * blocks on a slow logger. wf_set_logger first lets the lines logged before it
 * reach the previous logger; once it returns the previous logger is not
 * running and is not called again (not so when called from a provider
 * callback, reducer or the logger itself: there it does not wait). fn NULL
 * removes the logger. */
/* A line: {"ts","level","msg","boot_id","event"?, ids...}, "event" from the
 * vocabulary in docs/operations.md, "Logs" (job.dispatched, job.completed,
 * job.retry_scheduled, job.dead, saga.step, schedule.fired, ...) with the ids
 * in play (tenant, job_id, key, effect, saga, correlation_id, trace_id).
 * Payloads, results and the encryption key are never logged. */
typedef void (*wf_log_fn)(void *user, int level, const char *json_line);
WF_API int wf_set_logger(wf_engine *e, int min_level, wf_log_fn fn, void *user);

/* Sets the logger that engines opened from now on start with (process-wide;
 * none by default), so that what wf_open itself logs — "engine opened",
 * jobs recovered from stopped engines — reaches the host. wf_set_logger on an
 * engine replaces it for that engine. fn NULL removes it. `user` must stay
 * valid while engines that use it are open. */
WF_API int wf_set_default_logger(int min_level, wf_log_fn fn, void *user);

#ifdef __cplusplus
}
#endif

#endif /* WFENGINE_H */
