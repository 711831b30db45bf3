/* shim.h — run-time loading of libwfengine.so for the Go binding.
 *
 * The types and signatures below mirror include/wfengine.h (version 0.1); the
 * module cannot include that header because `go get` fetches bindings/go
 * alone. Every wrapper calls through a pointer resolved with dlsym and, when
 * the status is negative, copies wf_last_error() into *err (malloc'd) inside
 * the same C call, i.e. on the same OS thread as the failing call. */
#ifndef WFGO_SHIM_H
#define WFGO_SHIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct wf_engine wf_engine;
typedef struct wf_job wf_job;
typedef struct wf_tx wf_tx;
typedef struct wf_buf wf_buf;

/* Loads the library at `path`; NULL on success, else a malloc'd message. */
char *wfgo_load(const char *path);
const char *wfgo_version(void);
const char *wfgo_strerror(int status);
void wfgo_free(void *p);

int wfgo_open(const char *path, const char *opts, wf_engine **out, char **err);
int wfgo_start(wf_engine *e, char **err);
int wfgo_drain(wf_engine *e, int64_t timeout_ms, char **err);
int wfgo_close(wf_engine *e, char **err);
int wfgo_set_virtual_clock(wf_engine *e, int64_t *cell, char **err);
int wfgo_set_system_clock(wf_engine *e, char **err);
void wfgo_clock_store(int64_t *cell, int64_t v);
int64_t wfgo_clock_load(int64_t *cell);
int wfgo_wake(wf_engine *e, char **err);
int wfgo_sync(wf_engine *e, char **err);

int wfgo_effect_register(wf_engine *e, const char *effect, const char *policy, uintptr_t h,
                         char **err);
int wfgo_effect_register_builtin(wf_engine *e, const char *effect, const char *cfg, char **err);
const char *wfgo_job_id(const wf_job *j);
const char *wfgo_job_key(const wf_job *j);
const char *wfgo_job_tenant(const wf_job *j);
const char *wfgo_job_effect(const wf_job *j);
const char *wfgo_job_payload(const wf_job *j, size_t *len);
const char *wfgo_job_metadata(const wf_job *j);
int wfgo_job_attempt(const wf_job *j);
int wfgo_job_complete(wf_job *j, const char *result, char **err);
int wfgo_job_retry(wf_job *j, const char *error, int64_t delay_ms, char **err);
int wfgo_job_fail(wf_job *j, const char *error, char **err);

int wfgo_enqueue(wf_engine *e, const char *job, char **id, char **err);
int wfgo_enqueue_batch(wf_engine *e, const char *jobs, char **ids, char **err);
int wfgo_enqueue_async(wf_engine *e, const char *job, uintptr_t h, char **err);
int wfgo_submit_async(wf_engine *e, const char *ev, uintptr_t h, char **err);
int wfgo_cancel(wf_engine *e, const char *tenant, const char *id_or_key, char **err);
int wfgo_schedule(wf_engine *e, const char *sched, char **err);
int wfgo_unschedule(wf_engine *e, const char *tenant, const char *key, char **err);

int wfgo_buf_set(wf_buf *out, const char *data, size_t len);
int wfgo_saga_register(wf_engine *e, const char *saga, const char *spec, uintptr_t h, char **err);
int wfgo_submit(wf_engine *e, const char *ev, char **err);
int wfgo_saga_get(wf_engine *e, const char *tenant, const char *saga, const char *corr, char **out,
                  char **err);
int wfgo_saga_replay(wf_engine *e, const char *tenant, const char *saga, const char *corr,
                     const char *opts, char **out, char **err);

int wfgo_tx_begin(wf_engine *e, wf_tx **out, char **err);
int wfgo_tx_exec(wf_tx *t, const char *sql, const char *params, char **rows, char **err);
int wfgo_tx_enqueue(wf_tx *t, const char *job, char **id, char **err);
int wfgo_tx_schedule(wf_tx *t, const char *sched, char **err);
int wfgo_tx_submit(wf_tx *t, const char *ev, char **err);
int wfgo_tx_commit(wf_tx *t, char **err);
int wfgo_tx_rollback(wf_tx *t, char **err);

int wfgo_stats(wf_engine *e, const char *filter, char **out, char **err);
int wfgo_metrics(wf_engine *e, char **out, char **err);
int wfgo_dead_list(wf_engine *e, const char *filter, char **out, char **err);
int wfgo_dead_requeue(wf_engine *e, const char *filter, int64_t *count, char **err);
int wfgo_dead_purge(wf_engine *e, const char *filter, int64_t *count, char **err);
int wfgo_set_logger(wf_engine *e, int min_level, uintptr_t h, char **err);
int wfgo_clear_logger(wf_engine *e, char **err);
int wfgo_set_default_logger(int min_level, uintptr_t h, int clear, char **err);

/* Read API. */
int wfgo_jobs_list(wf_engine *e, const char *filter, char **out, char **err);
int wfgo_job_get(wf_engine *e, const char *tenant, const char *id_or_key, char **out, char **err);
int wfgo_schedules_list(wf_engine *e, const char *filter, char **out, char **err);
int wfgo_sagas_list(wf_engine *e, const char *filter, char **out, char **err);
int wfgo_saga_show(wf_engine *e, const char *tenant, const char *saga, const char *corr, char **out,
                   char **err);
int wfgo_events_list(wf_engine *e, const char *filter, char **out, char **err);
int wfgo_engines_list(wf_engine *e, char **out, char **err);
int wfgo_check(wf_engine *e, const char *opts, char **out, char **err);
int wfgo_backup(wf_engine *e, const char *path, char **err);

#endif
