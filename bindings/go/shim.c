/* shim.c — see shim.h. Function pointers resolved from libwfengine.so with
 * dlsym, thin wrappers that capture wf_last_error() on the calling thread,
 * and trampolines from engine threads into exported Go functions. */
#include "shim.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_cgo_export.h"

typedef int64_t (*clock_fn)(void *);
typedef void (*effect_fn)(void *, wf_job *);
typedef void (*done_fn)(void *, int, const char *);
typedef int (*saga_fn)(void *, const char *, size_t, wf_buf *);
typedef void (*log_fn)(void *, int, const char *);

static struct {
  const char *(*version)(void);
  const char *(*strerror)(int);
  const char *(*last_error)(void);
  void (*free)(void *);
  int (*open)(const char *, const char *, wf_engine **);
  int (*start)(wf_engine *);
  int (*drain)(wf_engine *, int64_t);
  int (*close)(wf_engine *);
  int (*set_clock)(wf_engine *, clock_fn, void *);
  int (*wake)(wf_engine *);
  int (*sync)(wf_engine *);
  int (*effect_register)(wf_engine *, const char *, const char *, effect_fn, void *);
  int (*effect_register_builtin)(wf_engine *, const char *, const char *);
  const char *(*job_id)(const wf_job *);
  const char *(*job_key)(const wf_job *);
  const char *(*job_tenant)(const wf_job *);
  const char *(*job_effect)(const wf_job *);
  const char *(*job_payload)(const wf_job *, size_t *);
  const char *(*job_metadata)(const wf_job *);
  int (*job_attempt)(const wf_job *);
  int (*job_complete)(wf_job *, const char *);
  int (*job_retry)(wf_job *, const char *, int64_t);
  int (*job_fail)(wf_job *, const char *);
  int (*enqueue)(wf_engine *, const char *, char **);
  int (*enqueue_batch)(wf_engine *, const char *, char **);
  int (*enqueue_async)(wf_engine *, const char *, done_fn, void *);
  int (*submit_async)(wf_engine *, const char *, done_fn, void *);
  int (*cancel)(wf_engine *, const char *, const char *);
  int (*schedule)(wf_engine *, const char *);
  int (*unschedule)(wf_engine *, const char *, const char *);
  int (*buf_set)(wf_buf *, const char *, size_t);
  int (*saga_register)(wf_engine *, const char *, const char *, saga_fn, void *);
  int (*submit)(wf_engine *, const char *);
  int (*saga_get)(wf_engine *, const char *, const char *, const char *, char **);
  int (*saga_replay)(wf_engine *, const char *, const char *, const char *, const char *, char **);
  int (*tx_begin)(wf_engine *, wf_tx **);
  int (*tx_exec)(wf_tx *, const char *, const char *, char **);
  int (*tx_enqueue)(wf_tx *, const char *, char **);
  int (*tx_schedule)(wf_tx *, const char *);
  int (*tx_submit)(wf_tx *, const char *);
  int (*tx_commit)(wf_tx *);
  int (*tx_rollback)(wf_tx *);
  int (*stats)(wf_engine *, const char *, char **);
  int (*metrics)(wf_engine *, char **);
  int (*dead_list)(wf_engine *, const char *, char **);
  int (*dead_requeue)(wf_engine *, const char *, int64_t *);
  int (*dead_purge)(wf_engine *, const char *, int64_t *);
  int (*set_logger)(wf_engine *, int, log_fn, void *);
  int (*set_default_logger)(int, log_fn, void *);
  int (*jobs_list)(wf_engine *, const char *, char **);
  int (*job_get)(wf_engine *, const char *, const char *, char **);
  int (*schedules_list)(wf_engine *, const char *, char **);
  int (*sagas_list)(wf_engine *, const char *, char **);
  int (*saga_show)(wf_engine *, const char *, const char *, const char *, char **);
  int (*events_list)(wf_engine *, const char *, char **);
  int (*engines_list)(wf_engine *, char **);
  int (*check)(wf_engine *, const char *, char **);
  int (*backup)(wf_engine *, const char *);
} api;

#define SYM(field, name)                                            \
  do {                                                              \
    *(void **)(&api.field) = dlsym(h, name);                        \
    if (!api.field) {                                               \
      char *m = malloc(256);                                        \
      if (m) snprintf(m, 256, "%s: missing symbol %s", path, name); \
      dlclose(h);                                                   \
      return m;                                                     \
    }                                                               \
  } while (0)

char *wfgo_load(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *d = dlerror();
    return strdup(d ? d : "dlopen failed");
  }
  SYM(version, "wf_version");
  SYM(strerror, "wf_strerror");
  SYM(last_error, "wf_last_error");
  SYM(free, "wf_free");
  SYM(open, "wf_open");
  SYM(start, "wf_start");
  SYM(drain, "wf_drain");
  SYM(close, "wf_close");
  SYM(set_clock, "wf_set_clock");
  SYM(wake, "wf_wake");
  SYM(sync, "wf_sync");
  SYM(effect_register, "wf_effect_register");
  SYM(effect_register_builtin, "wf_effect_register_builtin");
  SYM(job_id, "wf_job_id");
  SYM(job_key, "wf_job_key");
  SYM(job_tenant, "wf_job_tenant");
  SYM(job_effect, "wf_job_effect");
  SYM(job_payload, "wf_job_payload");
  SYM(job_metadata, "wf_job_metadata");
  SYM(job_attempt, "wf_job_attempt");
  SYM(job_complete, "wf_job_complete");
  SYM(job_retry, "wf_job_retry");
  SYM(job_fail, "wf_job_fail");
  SYM(enqueue, "wf_enqueue");
  SYM(enqueue_batch, "wf_enqueue_batch");
  SYM(enqueue_async, "wf_enqueue_async");
  SYM(submit_async, "wf_submit_async");
  SYM(cancel, "wf_cancel");
  SYM(schedule, "wf_schedule");
  SYM(unschedule, "wf_unschedule");
  SYM(buf_set, "wf_buf_set");
  SYM(saga_register, "wf_saga_register");
  SYM(submit, "wf_submit");
  SYM(saga_get, "wf_saga_get");
  SYM(saga_replay, "wf_saga_replay");
  SYM(tx_begin, "wf_tx_begin");
  SYM(tx_exec, "wf_tx_exec");
  SYM(tx_enqueue, "wf_tx_enqueue");
  SYM(tx_schedule, "wf_tx_schedule");
  SYM(tx_submit, "wf_tx_submit");
  SYM(tx_commit, "wf_tx_commit");
  SYM(tx_rollback, "wf_tx_rollback");
  SYM(stats, "wf_stats");
  SYM(metrics, "wf_metrics");
  SYM(dead_list, "wf_dead_list");
  SYM(dead_requeue, "wf_dead_requeue");
  SYM(dead_purge, "wf_dead_purge");
  SYM(set_logger, "wf_set_logger");
  SYM(set_default_logger, "wf_set_default_logger");
  SYM(jobs_list, "wf_jobs_list");
  SYM(job_get, "wf_job_get");
  SYM(schedules_list, "wf_schedules_list");
  SYM(sagas_list, "wf_sagas_list");
  SYM(saga_show, "wf_saga_show");
  SYM(events_list, "wf_events_list");
  SYM(engines_list, "wf_engines_list");
  SYM(check, "wf_check");
  SYM(backup, "wf_backup");
  return NULL; /* the handle stays open for the life of the process */
}

/* Copies the thread-local message while still on the failing call's thread. */
static int cap(int rc, char **err) {
  if (rc < 0 && err) {
    const char *m = api.last_error();
    *err = strdup(m ? m : "");
  }
  return rc;
}

const char *wfgo_version(void) { return api.version(); }
const char *wfgo_strerror(int s) { return api.strerror(s); }
void wfgo_free(void *p) { api.free(p); }

int wfgo_open(const char *p, const char *o, wf_engine **out, char **err) {
  return cap(api.open(p, o, out), err);
}
int wfgo_start(wf_engine *e, char **err) { return cap(api.start(e), err); }
int wfgo_drain(wf_engine *e, int64_t t, char **err) { return cap(api.drain(e, t), err); }
int wfgo_close(wf_engine *e, char **err) { return cap(api.close(e), err); }

static int64_t clock_tramp(void *user) {
  return __atomic_load_n((int64_t *)user, __ATOMIC_SEQ_CST);
}
void wfgo_clock_store(int64_t *cell, int64_t v) { __atomic_store_n(cell, v, __ATOMIC_SEQ_CST); }
int64_t wfgo_clock_load(int64_t *cell) { return __atomic_load_n(cell, __ATOMIC_SEQ_CST); }
int wfgo_set_virtual_clock(wf_engine *e, int64_t *cell, char **err) {
  return cap(api.set_clock(e, clock_tramp, cell), err);
}
int wfgo_set_system_clock(wf_engine *e, char **err) {
  return cap(api.set_clock(e, NULL, NULL), err);
}
int wfgo_wake(wf_engine *e, char **err) { return cap(api.wake(e), err); }
int wfgo_sync(wf_engine *e, char **err) { return cap(api.sync(e), err); }

static void effect_tramp(void *user, wf_job *j) { wfgoEffect((uintptr_t)user, j); }
int wfgo_effect_register(wf_engine *e, const char *eff, const char *pol, uintptr_t h, char **err) {
  return cap(api.effect_register(e, eff, pol, effect_tramp, (void *)h), err);
}
int wfgo_effect_register_builtin(wf_engine *e, const char *eff, const char *cfg, char **err) {
  return cap(api.effect_register_builtin(e, eff, cfg), err);
}
const char *wfgo_job_id(const wf_job *j) { return api.job_id(j); }
const char *wfgo_job_key(const wf_job *j) { return api.job_key(j); }
const char *wfgo_job_tenant(const wf_job *j) { return api.job_tenant(j); }
const char *wfgo_job_effect(const wf_job *j) { return api.job_effect(j); }
const char *wfgo_job_payload(const wf_job *j, size_t *len) { return api.job_payload(j, len); }
const char *wfgo_job_metadata(const wf_job *j) { return api.job_metadata(j); }
int wfgo_job_attempt(const wf_job *j) { return api.job_attempt(j); }
int wfgo_job_complete(wf_job *j, const char *r, char **err) {
  return cap(api.job_complete(j, r), err);
}
int wfgo_job_retry(wf_job *j, const char *m, int64_t d, char **err) {
  return cap(api.job_retry(j, m, d), err);
}
int wfgo_job_fail(wf_job *j, const char *m, char **err) { return cap(api.job_fail(j, m), err); }

int wfgo_enqueue(wf_engine *e, const char *job, char **id, char **err) {
  return cap(api.enqueue(e, job, id), err);
}
int wfgo_enqueue_batch(wf_engine *e, const char *jobs, char **ids, char **err) {
  return cap(api.enqueue_batch(e, jobs, ids), err);
}
/* The failure message of an async write is the notifier thread's last error,
 * read first thing in the callback. */
static void done_tramp(void *user, int status, const char *id) {
  const char *m = status < 0 ? api.last_error() : "";
  wfgoDone((uintptr_t)user, status, (char *)id, (char *)m);
}
int wfgo_enqueue_async(wf_engine *e, const char *job, uintptr_t h, char **err) {
  return cap(api.enqueue_async(e, job, done_tramp, (void *)h), err);
}
int wfgo_submit_async(wf_engine *e, const char *ev, uintptr_t h, char **err) {
  return cap(api.submit_async(e, ev, done_tramp, (void *)h), err);
}
int wfgo_cancel(wf_engine *e, const char *t, const char *k, char **err) {
  return cap(api.cancel(e, t, k), err);
}
int wfgo_schedule(wf_engine *e, const char *s, char **err) { return cap(api.schedule(e, s), err); }
int wfgo_unschedule(wf_engine *e, const char *t, const char *k, char **err) {
  return cap(api.unschedule(e, t, k), err);
}

int wfgo_buf_set(wf_buf *out, const char *d, size_t n) { return api.buf_set(out, d, n); }
static int saga_tramp(void *user, const char *in, size_t len, wf_buf *out) {
  return wfgoSaga((uintptr_t)user, (char *)in, len, out);
}
int wfgo_saga_register(wf_engine *e, const char *saga, const char *spec, uintptr_t h, char **err) {
  return cap(api.saga_register(e, saga, spec, saga_tramp, (void *)h), err);
}
int wfgo_submit(wf_engine *e, const char *ev, char **err) { return cap(api.submit(e, ev), err); }
int wfgo_saga_get(wf_engine *e, const char *t, const char *s, const char *c, char **out,
                  char **err) {
  return cap(api.saga_get(e, t, s, c, out), err);
}
int wfgo_saga_replay(wf_engine *e, const char *t, const char *s, const char *c, const char *o,
                     char **out, char **err) {
  return cap(api.saga_replay(e, t, s, c, o, out), err);
}

int wfgo_tx_begin(wf_engine *e, wf_tx **out, char **err) { return cap(api.tx_begin(e, out), err); }
int wfgo_tx_exec(wf_tx *t, const char *sql, const char *p, char **rows, char **err) {
  return cap(api.tx_exec(t, sql, p, rows), err);
}
int wfgo_tx_enqueue(wf_tx *t, const char *job, char **id, char **err) {
  return cap(api.tx_enqueue(t, job, id), err);
}
int wfgo_tx_schedule(wf_tx *t, const char *s, char **err) {
  return cap(api.tx_schedule(t, s), err);
}
int wfgo_tx_submit(wf_tx *t, const char *ev, char **err) { return cap(api.tx_submit(t, ev), err); }
int wfgo_tx_commit(wf_tx *t, char **err) { return cap(api.tx_commit(t), err); }
int wfgo_tx_rollback(wf_tx *t, char **err) { return cap(api.tx_rollback(t), err); }

int wfgo_stats(wf_engine *e, const char *f, char **out, char **err) {
  return cap(api.stats(e, f, out), err);
}
int wfgo_metrics(wf_engine *e, char **out, char **err) { return cap(api.metrics(e, out), err); }
int wfgo_dead_list(wf_engine *e, const char *f, char **out, char **err) {
  return cap(api.dead_list(e, f, out), err);
}
int wfgo_dead_requeue(wf_engine *e, const char *f, int64_t *n, char **err) {
  return cap(api.dead_requeue(e, f, n), err);
}
int wfgo_dead_purge(wf_engine *e, const char *f, int64_t *n, char **err) {
  return cap(api.dead_purge(e, f, n), err);
}
static void log_tramp(void *user, int level, const char *line) {
  wfgoLog((uintptr_t)user, level, (char *)line);
}
int wfgo_set_logger(wf_engine *e, int lvl, uintptr_t h, char **err) {
  return cap(api.set_logger(e, lvl, log_tramp, (void *)h), err);
}
int wfgo_clear_logger(wf_engine *e, char **err) {
  return cap(api.set_logger(e, 0, NULL, NULL), err);
}
int wfgo_set_default_logger(int lvl, uintptr_t h, int clear, char **err) {
  if (clear) return cap(api.set_default_logger(0, NULL, NULL), err);
  return cap(api.set_default_logger(lvl, log_tramp, (void *)h), err);
}

int wfgo_jobs_list(wf_engine *e, const char *f, char **out, char **err) {
  return cap(api.jobs_list(e, f, out), err);
}
int wfgo_job_get(wf_engine *e, const char *t, const char *k, char **out, char **err) {
  return cap(api.job_get(e, t, k, out), err);
}
int wfgo_schedules_list(wf_engine *e, const char *f, char **out, char **err) {
  return cap(api.schedules_list(e, f, out), err);
}
int wfgo_sagas_list(wf_engine *e, const char *f, char **out, char **err) {
  return cap(api.sagas_list(e, f, out), err);
}
int wfgo_saga_show(wf_engine *e, const char *t, const char *s, const char *c, char **out,
                   char **err) {
  return cap(api.saga_show(e, t, s, c, out), err);
}
int wfgo_events_list(wf_engine *e, const char *f, char **out, char **err) {
  return cap(api.events_list(e, f, out), err);
}
int wfgo_engines_list(wf_engine *e, char **out, char **err) {
  return cap(api.engines_list(e, out), err);
}
int wfgo_check(wf_engine *e, const char *o, char **out, char **err) {
  return cap(api.check(e, o, out), err);
}
int wfgo_backup(wf_engine *e, const char *p, char **err) { return cap(api.backup(e, p), err); }
