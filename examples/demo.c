/* End-to-end demo: enqueue work, run effects (one succeeds at once, one needs a
 * retry, one fails for good and becomes a dead letter), pipeline 1,000 audit
 * jobs with wf_enqueue_async, print the outcome and the engine's stats.
 * With a sink URL (scripts/demo.sh starts scripts/webhook_sink.py on
 * 127.0.0.1) one signed webhook is delivered by the built-in HTTP provider;
 * the signing secret comes from the environment variable WF_DEMO_WHSEC.
 * Usage: wf_demo [db-path [sink-url]] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wfengine.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int finished; /* jobs that reached a final outcome */

static void done_one(void) {
  pthread_mutex_lock(&mu);
  finished++;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

static void send_email(void *user, wf_job *job) {
  (void)user;
  size_t len;
  const char *payload = wf_job_payload(job, &len);
  printf("  email   job %s attempt %d payload %.*s\n", wf_job_id(job), wf_job_attempt(job),
         (int)len, payload);
  wf_job_complete(job, NULL);
  done_one();
}

/* A flaky webhook: fails the first attempt, succeeds on the second. */
static void call_webhook(void *user, wf_job *job) {
  (void)user;
  int attempt = wf_job_attempt(job);
  printf("  webhook job %s attempt %d -> %s\n", wf_job_id(job), attempt,
         attempt == 1 ? "503, retry" : "200");
  if (attempt == 1) {
    wf_job_retry(job, "HTTP 503 from sink", 50); /* retry in 50 ms */
  } else {
    wf_job_complete(job, "{\"status\":200}");
    done_one();
  }
}

static void charge_card(void *user, wf_job *job) {
  (void)user;
  printf("  charge  job %s attempt %d -> card declined (permanent)\n", wf_job_id(job),
         wf_job_attempt(job));
  wf_job_fail(job, "card declined");
  done_one();
}

/* wf_enqueue_async: the callback runs on the engine's notifier thread once
 * the job is durable (WF_OK) or has failed; audited counts the OKs. */
#define AUDIT_JOBS 1000
static int audited, audit_durable;

static void audit(void *user, wf_job *job) {
  (void)user;
  wf_job_complete(job, NULL);
  pthread_mutex_lock(&mu);
  audited++;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

static void audit_accepted(void *user, int status, const char *id) {
  (void)user;
  (void)id;
  if (status != WF_OK) {
    fprintf(stderr, "audit job failed: %s: %s\n", wf_strerror(status), wf_last_error());
    return;
  }
  pthread_mutex_lock(&mu);
  audit_durable++;
  pthread_mutex_unlock(&mu);
}

#define CHECK(call)                                                                     \
  do {                                                                                  \
    int rc_ = (call);                                                                   \
    if (rc_ != WF_OK && rc_ != WF_EEXIST) {                                             \
      fprintf(stderr, "%s failed: %s: %s\n", #call, wf_strerror(rc_), wf_last_error()); \
      exit(1);                                                                          \
    }                                                                                   \
  } while (0)

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "wf_demo.db";
  wf_engine *e;
  printf("wfengine %s, database %s\n", wf_version(), path);
  CHECK(wf_open(path, "{\"durability\":\"full\"}", &e));
  CHECK(wf_effect_register(e, "email", NULL, send_email, NULL));
  CHECK(wf_effect_register(e, "webhook", "{\"max_attempts\":5}", call_webhook, NULL));
  CHECK(wf_effect_register(e, "charge", NULL, charge_card, NULL));
  CHECK(wf_effect_register(e, "audit", NULL, audit, NULL));
  const char *sink = argc > 2 ? argv[2] : NULL;
  if (sink) {
    /* Built-in provider: one document configures the endpoint and the
     * effect policy; the secret is resolved now and never stored. */
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"type\":\"http\",\"url\":\"%s\",\"secrets\":[\"env:WF_DEMO_WHSEC\"],"
             "\"allow_private_networks\":true,\"timeout_ms\":5000,\"max_attempts\":3}",
             sink);
    CHECK(wf_effect_register_builtin(e, "signed_webhook", cfg));
    CHECK(wf_enqueue(e,
                     "{\"effect\":\"signed_webhook\",\"key\":\"order-42-shipped\","
                     "\"payload\":{\"type\":\"order.shipped\",\"order\":42}}",
                     NULL));
    printf("enqueued a signed webhook to %s\n", sink);
  }

  char *id = NULL;
  CHECK(wf_enqueue(
      e, "{\"effect\":\"email\",\"key\":\"welcome-42\",\"payload\":{\"to\":\"a@example.com\"}}",
      &id));
  printf("enqueued email job %s\n", id);
  wf_free(id);
  int rc = wf_enqueue(e, "{\"effect\":\"email\",\"key\":\"welcome-42\",\"payload\":{}}", &id);
  printf("enqueue with the same key again -> %s (existing job %s)\n", wf_strerror(rc), id);
  wf_free(id);
  CHECK(wf_enqueue(e, "{\"effect\":\"webhook\",\"payload\":{\"url\":\"https://example.com/hook\"}}",
                   NULL));
  CHECK(
      wf_enqueue(e, "{\"effect\":\"charge\",\"payload\":{\"amount\":1999},\"priority\":5}", NULL));
  rc = wf_enqueue(e, "{\"payload\":1}", NULL);
  printf("enqueue without an effect -> %s: %s\n", wf_strerror(rc), wf_last_error());

  /* Pipelined: each call returns once the job is validated; the writer
   * commits many of them per fsync and the callback confirms durability. */
  for (int i = 0; i < AUDIT_JOBS; i++) {
    char doc[96];
    snprintf(doc, sizeof doc, "{\"effect\":\"audit\",\"payload\":{\"n\":%d}}", i);
    CHECK(wf_enqueue_async(e, doc, audit_accepted, NULL));
  }
  CHECK(wf_sync(e)); /* every accepted write committed, every callback run */
  pthread_mutex_lock(&mu);
  printf("wf_enqueue_async: %d audit jobs accepted, %d durable\n", AUDIT_JOBS, audit_durable);
  pthread_mutex_unlock(&mu);

  printf("starting the relay\n");
  CHECK(wf_start(e));
  pthread_mutex_lock(&mu);
  while (finished < 3 || audited < AUDIT_JOBS) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  if (sink) {
    /* The built-in provider reports to the engine, not to us: wait until the
     * effect's outbox is empty (bounded). */
    const char *filter = "{\"effect\":\"signed_webhook\"}";
    for (int i = 0; i < 200; i++) {
      char *st = NULL;
      CHECK(wf_sync(e));
      CHECK(wf_stats(e, filter, &st));
      int idle =
          strstr(st, "\"ready\":0") && strstr(st, "\"running\":0") && strstr(st, "\"scheduled\":0");
      wf_free(st);
      if (idle) break;
      struct timespec ts = {0, 50 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    char *dl = NULL;
    CHECK(wf_dead_list(e, filter, &dl));
    printf("signed webhook: %s\n", strcmp(dl, "[]") == 0 ? "delivered (2xx)" : dl);
    wf_free(dl);
  }
  CHECK(wf_drain(e, 5000));

  char *dead = NULL;
  CHECK(wf_dead_list(e, NULL, &dead));
  printf("dead letters: %s\n", dead);
  wf_free(dead);
  char *stats = NULL;
  CHECK(wf_stats(e, NULL, &stats));
  printf("stats: %s\n", stats);
  wf_free(stats);
  CHECK(wf_close(e));
  return 0;
}
