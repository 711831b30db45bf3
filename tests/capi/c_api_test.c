/*
 * c_api_test.c — exercises the public API from pure C99, the way a C host or a
 * binding would: status codes, error texts, ownership of returned strings,
 * provider callbacks on the engine thread, dead letters and host transactions.
 *
 * No test framework on purpose: this file must stay plain C99 + POSIX.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wfengine.h"

#define CHECK(cond)                                                                             \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n  wf_last_error: \"%s\"\n", __FILE__, __LINE__, \
              #cond, wf_last_error());                                                          \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

/* Checks a status code and prints both the expected and the actual one. */
#define CHECK_RC(expr, want)                                                                     \
  do {                                                                                           \
    int rc_ = (expr);                                                                            \
    char le_[1024];                                                                              \
    snprintf(le_, sizeof le_, "%s", wf_last_error()); /* before other wf_* calls */              \
    if (rc_ != (want)) {                                                                         \
      fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n  wf_last_error: \"%s\"\n", \
              __FILE__, __LINE__, #expr, rc_, wf_strerror(rc_), (want), wf_strerror(want), le_); \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

#define WAIT_MS 15000 /* upper bound for anything asynchronous */

/* ------------------------------------------------------------ tiny JSON scan */

/* Enough JSON to read numbers out of wf_stats and rows out of wf_tx_exec: skips
 * one value starting at `p` and returns the first character after it, or NULL on
 * malformed input. */
static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}

static const char *skip_string(const char *p) {
  if (*p != '"') return NULL;
  for (p++; *p; p++) {
    if (*p == '\\') {
      if (!p[1]) return NULL;
      p++;
    } else if (*p == '"') {
      return p + 1;
    }
  }
  return NULL;
}

static const char *skip_value(const char *p) {
  p = skip_ws(p);
  if (*p == '"') return skip_string(p);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (*p) {
      if (*p == '"') {
        p = skip_string(p);
        if (!p) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') {
        depth++;
      } else if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
      p++;
    }
    return NULL;
  }
  /* number, true, false, null */
  while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\t' &&
         *p != '\r')
    p++;
  return p;
}

/* Returns a pointer to the value of member `key` of the object starting at `obj`
 * (top level of that object only), or NULL. */
static const char *json_member(const char *obj, const char *key) {
  const char *p = skip_ws(obj);
  size_t klen = strlen(key);
  if (*p != '{') return NULL;
  p = skip_ws(p + 1);
  while (*p == '"') {
    const char *kstart = p + 1;
    const char *kend = skip_string(p);
    int match;
    if (!kend) return NULL;
    match = (size_t)(kend - 1 - kstart) == klen && memcmp(kstart, key, klen) == 0;
    p = skip_ws(kend);
    if (*p != ':') return NULL;
    p = skip_ws(p + 1);
    if (match) return p;
    p = skip_value(p);
    if (!p) return NULL;
    p = skip_ws(p);
    if (*p == ',') p = skip_ws(p + 1);
  }
  return NULL;
}

/* outbox.<field> of a wf_stats document; -1 when absent. */
static long long stats_outbox(wf_engine *e, const char *filter, const char *field) {
  char *json = NULL;
  const char *outbox, *v;
  long long n = -1;
  CHECK_RC(wf_stats(e, filter, &json), WF_OK);
  CHECK(json != NULL);
  outbox = json_member(json, "outbox");
  if (outbox && (v = json_member(outbox, field)) != NULL) n = strtoll(v, NULL, 10);
  if (n < 0) fprintf(stderr, "stats without outbox.%s: %s\n", field, json);
  wf_free(json);
  return n;
}

/* Counts occurrences of `needle` in `hay` after removing JSON whitespace outside
 * strings, so `"existing": true` and `"existing":true` both count. */
static int count_compact(const char *hay, const char *needle) {
  size_t n = strlen(hay);
  char *c = (char *)malloc(n + 1);
  size_t i, j = 0;
  int in_str = 0, count = 0;
  const char *p;
  CHECK(c != NULL);
  for (i = 0; i < n; i++) {
    char ch = hay[i];
    if (in_str) {
      c[j++] = ch;
      if (ch == '\\' && i + 1 < n) {
        c[j++] = hay[++i];
      } else if (ch == '"') {
        in_str = 0;
      }
    } else if (ch == '"') {
      in_str = 1;
      c[j++] = ch;
    } else if (ch != ' ' && ch != '\n' && ch != '\t' && ch != '\r') {
      c[j++] = ch;
    }
  }
  c[j] = '\0';
  for (p = c; (p = strstr(p, needle)) != NULL; p += strlen(needle)) count++;
  free(c);
  return count;
}

/* ------------------------------------------------------------ time helpers */

static struct timespec deadline_in(long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

static int passed(const struct timespec *dl) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec > dl->tv_sec || (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* ------------------------------------------------------------ providers */

#define N_DELIVER 20

struct deliver_ctx {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int delivered;       /* guarded by mu */
  int seen[N_DELIVER]; /* guarded by mu: deliveries per key d<i> */
  int bad;             /* guarded by mu: accessor values that were wrong */
  int failed;          /* guarded by mu: jobs the "failer" provider failed */
  char failed_id[128]; /* guarded by mu */
};

static void deliver_cb(void *user, wf_job *job) {
  struct deliver_ctx *ctx = (struct deliver_ctx *)user;
  size_t len = 0;
  const char *payload = wf_job_payload(job, &len);
  const char *key = wf_job_key(job);
  int idx = -1;
  int bad = 0;
  if (!wf_job_id(job) || wf_job_id(job)[0] == '\0') bad = 1;
  if (!wf_job_effect(job) || strcmp(wf_job_effect(job), "deliver") != 0) bad = 1;
  if (!wf_job_tenant(job) || strcmp(wf_job_tenant(job), "") != 0) bad = 1;
  if (!wf_job_metadata(job) || wf_job_metadata(job)[0] != '{') bad = 1;
  if (wf_job_attempt(job) != 1) bad = 1;
  if (!payload || len == 0 || strstr(payload, "\"n\"") == NULL) bad = 1;
  if (key && key[0] == 'd') idx = atoi(key + 1);
  if (idx < 0 || idx >= N_DELIVER) bad = 1;
  if (bad)
    fprintf(stderr, "deliver_cb: unexpected job id=%s key=%s effect=%s attempt=%d payload=%.*s\n",
            wf_job_id(job), key ? key : "(null)", wf_job_effect(job), wf_job_attempt(job), (int)len,
            payload ? payload : "");
  /* Complete outside the lock: the engine may call back synchronously. */
  if (wf_job_complete(job, "{\"ok\":true}") != WF_OK) bad = 1;
  pthread_mutex_lock(&ctx->mu);
  ctx->bad += bad;
  if (idx >= 0 && idx < N_DELIVER) ctx->seen[idx]++;
  ctx->delivered++;
  pthread_cond_broadcast(&ctx->cv);
  pthread_mutex_unlock(&ctx->mu);
}

static void failer_cb(void *user, wf_job *job) {
  struct deliver_ctx *ctx = (struct deliver_ctx *)user;
  char id[128];
  int rc;
  snprintf(id, sizeof id, "%s", wf_job_id(job));
  rc = wf_job_fail(job, "boom: permanent failure");
  pthread_mutex_lock(&ctx->mu);
  if (rc != WF_OK) ctx->bad++;
  snprintf(ctx->failed_id, sizeof ctx->failed_id, "%s", id);
  ctx->failed++;
  pthread_cond_broadcast(&ctx->cv);
  pthread_mutex_unlock(&ctx->mu);
}

/* ------------------------------------------------------------ sections */

static void test_misc(void) {
  char want[64];
  static const int codes[] = {WF_OK,           WF_EINVAL,    WF_ENOTFOUND, WF_EEXIST,
                              WF_EBUSY,        WF_ECLOSED,   WF_EIO,       WF_ECORRUPT,
                              WF_ENOMEM,       WF_ETIMEDOUT, WF_ETOOBIG,   WF_ESTATE,
                              WF_EUNSUPPORTED, WF_EINTERNAL, WF_ECONFLICT, WF_EFORKED};
  size_t n = sizeof codes / sizeof codes[0];
  size_t i, j;

  snprintf(want, sizeof want, "%d.%d.%d", WF_VERSION_MAJOR, WF_VERSION_MINOR, WF_VERSION_PATCH);
  CHECK(wf_version() != NULL);
  CHECK(strcmp(wf_version(), want) == 0);

  for (i = 0; i < n; i++) {
    const char *s = wf_strerror(codes[i]);
    CHECK(s != NULL);
    CHECK(s[0] != '\0');
    for (j = 0; j < i; j++) {
      if (strcmp(s, wf_strerror(codes[j])) == 0) {
        fprintf(stderr, "wf_strerror(%d) == wf_strerror(%d) == \"%s\"\n", codes[i], codes[j], s);
        CHECK(0);
      }
    }
  }
  CHECK(wf_strerror(-9999) != NULL);
  CHECK(wf_strerror(12345) != NULL);
  CHECK(wf_last_error() != NULL);

  wf_free(NULL);
  CHECK_RC(wf_close(NULL), WF_OK);
  CHECK_RC(wf_tx_rollback(NULL), WF_OK);
}

static void test_open_errors(const char *path) {
  wf_engine *e = NULL;
  CHECK_RC(wf_open(path, "{\"no_such_option_xyz\":1}", &e), WF_EINVAL);
  CHECK(e == NULL);
  CHECK(wf_last_error()[0] != '\0');
  CHECK_RC(wf_open(path, "{not json", &e), WF_EINVAL);
  CHECK(e == NULL);
  CHECK(wf_last_error()[0] != '\0');
}

static int contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++) {
    size_t k = 0;
    while (k < n && hay[k] && (hay[k] | 0x20) == (needle[k] | 0x20)) k++;
    if (k == n) return 1;
  }
  return 0;
}

static void test_enqueue(wf_engine *e, char **id_k1_out) {
  char *id = NULL, *id1 = NULL, *id2 = NULL, *ids = NULL;
  const char *msg;
  long long ready_before, ready_after;

  /* Without key. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\",\"payload\":{\"a\":1}}", &id), WF_OK);
  CHECK(id != NULL && id[0] != '\0');
  wf_free(id);
  id = NULL;
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\"}", NULL), WF_OK); /* id_out NULL ok */

  /* With key: the second enqueue is WF_EEXIST and returns the first id. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\",\"key\":\"k1\",\"payload\":[1,2,3]}", &id1), WF_OK);
  CHECK(id1 != NULL && id1[0] != '\0');
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\",\"key\":\"k1\",\"payload\":\"other\"}", &id2),
           WF_EEXIST);
  CHECK(id2 != NULL);
  CHECK(strcmp(id1, id2) == 0);
  wf_free(id2);
  id2 = NULL;

  /* Malformed JSON. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\",", &id), WF_EINVAL);
  msg = wf_last_error();
  CHECK(msg != NULL && msg[0] != '\0');
  if (!(contains_ci(msg, "json") || contains_ci(msg, "parse") || contains_ci(msg, "syntax") ||
        contains_ci(msg, "malformed"))) {
    fprintf(stderr, "malformed JSON: message does not say so: \"%s\"\n", msg);
    CHECK(0);
  }
  CHECK_RC(wf_enqueue(e, NULL, NULL), WF_EINVAL);
  CHECK_RC(wf_enqueue(e, "[1,2]", NULL), WF_EINVAL);

  /* Missing "effect": the message names the field. */
  CHECK_RC(wf_enqueue(e, "{\"payload\":{\"a\":1}}", &id), WF_EINVAL);
  msg = wf_last_error();
  CHECK(msg != NULL && msg[0] != '\0');
  if (strstr(msg, "effect") == NULL) {
    fprintf(stderr, "missing effect: message does not name the field: \"%s\"\n", msg);
    CHECK(0);
  }
  /* A successful call after a failure leaves the message well-defined. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\"}", NULL), WF_OK);
  CHECK(wf_last_error() != NULL);

  /* Batch: one entry per input, the existing key reported as existing. */
  ready_before = stats_outbox(e, "{\"effect\":\"noop\"}", "ready");
  CHECK(ready_before >= 0);
  CHECK_RC(wf_enqueue_batch(e,
                            "[{\"effect\":\"noop\",\"key\":\"b1\"},"
                            "{\"effect\":\"noop\",\"key\":\"k1\"},"
                            "{\"effect\":\"noop\",\"payload\":null}]",
                            &ids),
           WF_OK);
  CHECK(ids != NULL);
  CHECK(count_compact(ids, "\"existing\":true") == 1);
  CHECK(count_compact(ids, "\"existing\":false") == 2);
  CHECK(count_compact(ids, "\"id\":") == 3);
  CHECK(strstr(ids, id1) != NULL);
  wf_free(ids);
  ids = NULL;
  ready_after = stats_outbox(e, "{\"effect\":\"noop\"}", "ready");
  CHECK(ready_after == ready_before + 2);

  /* Batch: all or nothing. */
  CHECK_RC(wf_enqueue_batch(e, "[{\"effect\":\"noop\",\"key\":\"b2\"},{\"payload\":1}]", &ids),
           WF_EINVAL);
  CHECK(wf_last_error()[0] != '\0');
  wf_free(ids);
  ids = NULL;
  CHECK(stats_outbox(e, "{\"effect\":\"noop\"}", "ready") == ready_after);
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\",\"key\":\"b2\"}", NULL), WF_OK); /* key free */
  CHECK_RC(wf_enqueue_batch(e, "not an array", NULL), WF_EINVAL);

  /* Cancel by key, then it is gone. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\",\"key\":\"c1\"}", NULL), WF_OK);
  CHECK_RC(wf_cancel(e, NULL, "c1"), WF_OK);
  CHECK_RC(wf_cancel(e, NULL, "c1"), WF_ENOTFOUND);
  CHECK_RC(wf_cancel(e, "", "no-such-key-or-id"), WF_ENOTFOUND);

  *id_k1_out = id1;
}

static void test_stats_and_metrics(wf_engine *e) {
  char *json = NULL, *text = NULL;
  CHECK_RC(wf_stats(e, NULL, &json), WF_OK);
  CHECK(json != NULL);
  CHECK(strstr(json, "\"outbox\"") != NULL);
  CHECK(json_member(json, "outbox") != NULL);
  wf_free(json);
  json = NULL;
  CHECK_RC(wf_stats(e, "{}", &json), WF_OK);
  CHECK(strstr(json, "\"outbox\"") != NULL);
  wf_free(json);
  json = NULL;
  CHECK_RC(wf_stats(e, "{\"effect\":", &json), WF_EINVAL);
  wf_free(json);
  CHECK_RC(wf_metrics(e, &text), WF_OK);
  CHECK(text != NULL && text[0] != '\0');
  wf_free(text);
}

static void test_relay(wf_engine *e, struct deliver_ctx *ctx) {
  int i;
  struct timespec dl;
  char job[160];

  CHECK_RC(wf_effect_register(e, "deliver", "{\"max_attempts\":3}", deliver_cb, ctx), WF_OK);
  CHECK_RC(wf_effect_register(e, "deliver", NULL, deliver_cb, ctx), WF_EEXIST);
  CHECK_RC(wf_effect_register(e, "failer", "{\"max_attempts\":5}", failer_cb, ctx), WF_OK);
  CHECK_RC(wf_effect_register_builtin(e, "web", "{\"type\":\"carrier-pigeon\"}"), WF_EUNSUPPORTED);
  CHECK_RC(wf_effect_register_builtin(e, "web", "{\"url\":\"x\"}"), WF_EINVAL);
  CHECK_RC(wf_effect_register_builtin(e, "web", "[1]"), WF_EINVAL);
  CHECK_RC(wf_effect_register_builtin(e, "web", NULL), WF_EINVAL);

  /* Some enqueued before start, some after. */
  for (i = 0; i < N_DELIVER / 2; i++) {
    snprintf(job, sizeof job, "{\"effect\":\"deliver\",\"key\":\"d%d\",\"payload\":{\"n\":%d}}", i,
             i);
    CHECK_RC(wf_enqueue(e, job, NULL), WF_OK);
  }
  CHECK_RC(wf_start(e), WF_OK);
  CHECK_RC(wf_start(e), WF_ESTATE);
  for (; i < N_DELIVER; i++) {
    snprintf(job, sizeof job, "{\"effect\":\"deliver\",\"key\":\"d%d\",\"payload\":{\"n\":%d}}", i,
             i);
    CHECK_RC(wf_enqueue(e, job, NULL), WF_OK);
  }

  dl = deadline_in(WAIT_MS);
  pthread_mutex_lock(&ctx->mu);
  while (ctx->delivered < N_DELIVER) {
    int rc = pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl);
    if (rc == ETIMEDOUT) break;
  }
  if (ctx->delivered < N_DELIVER)
    fprintf(stderr, "only %d of %d jobs delivered within %d ms\n", ctx->delivered, N_DELIVER,
            WAIT_MS);
  CHECK(ctx->delivered >= N_DELIVER);
  for (i = 0; i < N_DELIVER; i++) CHECK(ctx->seen[i] == 1);
  CHECK(ctx->bad == 0);
  pthread_mutex_unlock(&ctx->mu);

  /* Completed jobs leave the outbox (completions are committed asynchronously). */
  dl = deadline_in(WAIT_MS);
  for (;;) {
    long long ready = stats_outbox(e, "{\"effect\":\"deliver\"}", "ready");
    long long running = stats_outbox(e, "{\"effect\":\"deliver\"}", "running");
    CHECK(ready >= 0 && running >= 0);
    if (ready == 0 && running == 0) break;
    CHECK(!passed(&dl));
    {
      struct timespec pause = deadline_in(20);
      pthread_mutex_lock(&ctx->mu);
      pthread_cond_timedwait(&ctx->cv, &ctx->mu, &pause);
      pthread_mutex_unlock(&ctx->mu);
    }
  }
  /* The key is remembered after completion. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"deliver\",\"key\":\"d0\",\"payload\":{\"n\":0}}", NULL),
           WF_EEXIST);
}

static void test_dead_letters(wf_engine *e, struct deliver_ctx *ctx) {
  char *id = NULL, *json = NULL;
  struct timespec dl;

  CHECK_RC(wf_enqueue(e, "{\"effect\":\"failer\",\"key\":\"f1\",\"payload\":{\"x\":1}}", &id),
           WF_OK);
  dl = deadline_in(WAIT_MS);
  pthread_mutex_lock(&ctx->mu);
  while (ctx->failed < 1) {
    if (pthread_cond_timedwait(&ctx->cv, &ctx->mu, &dl) == ETIMEDOUT) break;
  }
  CHECK(ctx->failed == 1);
  CHECK(strcmp(ctx->failed_id, id) == 0);
  CHECK(ctx->bad == 0);
  pthread_mutex_unlock(&ctx->mu);

  /* The failure is committed asynchronously: wait (bounded) for the dead letter. */
  dl = deadline_in(WAIT_MS);
  for (;;) {
    CHECK_RC(wf_dead_list(e, "{\"effect\":\"failer\"}", &json), WF_OK);
    CHECK(json != NULL);
    if (strstr(json, id) != NULL) break;
    wf_free(json);
    json = NULL;
    if (passed(&dl)) {
      fprintf(stderr, "dead letter %s not listed within %d ms\n", id, WAIT_MS);
      CHECK(0);
    }
    {
      struct timespec pause = deadline_in(20);
      pthread_mutex_lock(&ctx->mu);
      pthread_cond_timedwait(&ctx->cv, &ctx->mu, &pause);
      pthread_mutex_unlock(&ctx->mu);
    }
  }
  CHECK(strstr(json, "boom: permanent failure") != NULL);
  CHECK(strstr(json, "f1") != NULL);
  wf_free(json);
  json = NULL;

  /* The filter applies: another effect has no dead letters. */
  CHECK_RC(wf_dead_list(e, "{\"effect\":\"deliver\"}", &json), WF_OK);
  CHECK(strstr(json, id) == NULL);
  wf_free(json);
  json = NULL;
  CHECK_RC(wf_dead_list(e, "{\"effect\":", &json), WF_EINVAL);
  wf_free(json);
  wf_free(id);
}

static void test_tx(wf_engine *e) {
  wf_tx *t = NULL;
  char *rows = NULL, *id = NULL;

  /* Commit: business row and job appear together. */
  CHECK_RC(wf_tx_begin(e, &t), WF_OK);
  CHECK(t != NULL);
  CHECK_RC(wf_tx_exec(t, "CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, v TEXT)", NULL,
                      NULL),
           WF_OK);
  CHECK_RC(wf_tx_exec(t, "INSERT INTO orders(id, v) VALUES(?, ?)", "[1,\"x\"]", NULL), WF_OK);
  /* Non-tx writes from the thread that owns an open tx are refused. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"txeff\",\"key\":\"busy\"}", NULL), WF_EBUSY);
  CHECK_RC(
      wf_tx_enqueue(t, "{\"effect\":\"txeff\",\"key\":\"order-1\",\"payload\":{\"order\":1}}", &id),
      WF_OK);
  CHECK(id != NULL && id[0] != '\0');
  wf_free(id);
  id = NULL;
  CHECK_RC(wf_tx_commit(t), WF_OK);
  t = NULL;
  CHECK(stats_outbox(e, "{\"effect\":\"txeff\"}", "ready") == 1);

  /* Rollback: business row and job vanish together. */
  CHECK_RC(wf_tx_begin(e, &t), WF_OK);
  CHECK_RC(wf_tx_exec(t, "INSERT INTO orders(id, v) VALUES(?, ?)", "[2,\"y\"]", NULL), WF_OK);
  CHECK_RC(wf_tx_enqueue(t, "{\"effect\":\"txeff\",\"key\":\"order-2\",\"payload\":{\"order\":2}}",
                         NULL),
           WF_OK);
  CHECK_RC(wf_tx_rollback(t), WF_OK);
  t = NULL;

  /* Verify with a SELECT in a new tx. */
  CHECK_RC(wf_tx_begin(e, &t), WF_OK);
  CHECK_RC(wf_tx_exec(t, "SELECT id, v FROM orders ORDER BY id", NULL, &rows), WF_OK);
  CHECK(rows != NULL);
  CHECK(count_compact(rows, "\"id\":1") == 1);
  CHECK(count_compact(rows, "\"v\":\"x\"") == 1);
  CHECK(count_compact(rows, "\"id\":2") == 0);
  CHECK(count_compact(rows, "\"v\":\"y\"") == 0);
  wf_free(rows);
  rows = NULL;
  CHECK_RC(wf_tx_exec(t, "SELECT count(*) AS n FROM orders WHERE id = ?", "[2]", &rows), WF_OK);
  CHECK(count_compact(rows, "\"n\":0") == 1);
  wf_free(rows);
  rows = NULL;
  /* The engine's own tables, transaction control and PRAGMA are refused. */
  CHECK_RC(wf_tx_exec(t, "CREATE TABLE wf_evil(x)", NULL, NULL), WF_EINVAL);
  CHECK_RC(wf_tx_exec(t, "COMMIT", NULL, NULL), WF_EINVAL);
  CHECK_RC(wf_tx_exec(t, "PRAGMA journal_mode", NULL, &rows), WF_EINVAL);
  wf_free(rows);
  rows = NULL;
  /* Bad statements fail with a message (the tx is rolled back below anyway). */
  CHECK(wf_tx_exec(t, "SELEC nonsense", NULL, NULL) != WF_OK);
  CHECK(wf_last_error()[0] != '\0');
  CHECK_RC(wf_tx_enqueue(t, "{\"payload\":1}", NULL), WF_EINVAL);
  CHECK_RC(wf_tx_rollback(t), WF_OK);
  t = NULL;

  CHECK(stats_outbox(e, "{\"effect\":\"txeff\"}", "ready") == 1);
  /* The rolled-back key was never taken; the committed one was. */
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"txeff\",\"key\":\"order-2\"}", NULL), WF_OK);
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"txeff\",\"key\":\"order-1\"}", NULL), WF_EEXIST);
  CHECK(stats_outbox(e, "{\"effect\":\"txeff\"}", "ready") == 2);
}

static void cleanup_dir(const char *dir) {
  static const char *const files[] = {"c_api.db", "c_api.db-wal", "c_api.db-shm",
                                      "c_api.db-journal"};
  char p[1100];
  size_t i;
  for (i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    unlink(p);
  }
  rmdir(dir);
}

int main(void) {
  char dir[1024];
  char path[1100];
  const char *tmp = getenv("TMPDIR");
  wf_engine *e = NULL;
  char *id_k1 = NULL, *id = NULL;
  struct deliver_ctx ctx;

  setvbuf(stdout, NULL, _IONBF, 0);
  memset(&ctx, 0, sizeof ctx);
  CHECK(pthread_mutex_init(&ctx.mu, NULL) == 0);
  CHECK(pthread_cond_init(&ctx.cv, NULL) == 0);

  test_misc();

  snprintf(dir, sizeof dir, "%s/wf_capi_XXXXXX", (tmp && tmp[0]) ? tmp : "/tmp");
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/c_api.db", dir);

  test_open_errors(path);
  CHECK_RC(wf_open(path, "{}", &e), WF_OK);
  CHECK(e != NULL);
  CHECK(access(path, F_OK) == 0);

  test_enqueue(e, &id_k1);
  test_stats_and_metrics(e);
  test_tx(e);
  test_relay(e, &ctx);
  test_dead_letters(e, &ctx);

  CHECK_RC(wf_close(e), WF_OK);
  e = NULL;

  /* Reopen (NULL options): accepted work and keys survived. */
  CHECK_RC(wf_open(path, NULL, &e), WF_OK);
  CHECK_RC(wf_enqueue(e, "{\"effect\":\"noop\",\"key\":\"k1\"}", &id), WF_EEXIST);
  CHECK(id != NULL && strcmp(id, id_k1) == 0);
  wf_free(id);
  CHECK(stats_outbox(e, "{\"effect\":\"txeff\"}", "ready") == 2);
  CHECK_RC(wf_close(e), WF_OK);

  wf_free(id_k1);
  pthread_cond_destroy(&ctx.cv);
  pthread_mutex_destroy(&ctx.mu);
  cleanup_dir(dir);
  printf("c_api_test: all checks passed (wfengine %s)\n", wf_version());
  return 0;
}
