/* edge_appliance: a small sensor appliance built on the static library
 * (libwfengine.a; docs/embedding.md gives the link line and what is static).
 *
 * It reads sensor readings, enqueues one signed webhook per reading (the
 * built-in HTTP provider, Standard Webhooks signature) and keeps a cron
 * schedule: a heartbeat job that prints a summary. A reading is accepted once
 * its job is durable in the SQLite file: if the sink is down or the appliance
 * is restarted, undelivered readings go out on a later run.
 *
 * Usage:
 *   edge_appliance --db PATH --url URL [--secret SPEC] [--allow-private]
 *                  [--readings FILE|-] [--simulate N [--seed S]]
 *                  [--cron EXPR] [--deliver-timeout-ms MS]
 *
 *   --secret SPEC   signing secret: whsec_<base64>, env:NAME or file:/path
 *                   (default env:EDGE_WHSEC); never stored in the database
 *   --allow-private allow sinks on loopback / private addresses (SSRF guard)
 *   --readings F    one reading per line: "<sensor> <value> [<ts_ms>]"
 *                   (sensor: 1-64 of A-Z a-z 0-9 . _ -; '#' starts a comment);
 *                   "-" is standard input
 *   --simulate N    N readings of a simulated sensor with a fixed seed
 *                   (deterministic: same seed, same readings, same job keys)
 *   --cron EXPR     the heartbeat schedule (default "* * * * *": every minute)
 *   --deliver-timeout-ms MS  after the input ends, wait at most this long for
 *                   every reading to be delivered (default 30000)
 *
 * It exits after the input ends and the readings were delivered, or on
 * SIGTERM / SIGINT, in both cases with wf_drain + wf_close. Exit status: 0 all
 * readings delivered (or stopped by a signal and closed cleanly), 1 usage or
 * engine error, 2 a reading was rejected or became a dead letter, 3 readings
 * still queued at the deadline (they stay durable and go out on the next run). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wfengine.h"

#define READING_EFFECT "reading"
#define HEARTBEAT_EFFECT "heartbeat"

typedef struct {
  const char *db, *url, *secret, *readings, *cron;
  long simulate; /* -1: not simulating */
  unsigned long seed;
  long deliver_timeout_ms;
  int allow_private;
} config;

static wf_engine *engine;
static config cfg;

/* Shared between the signal thread, the producer thread and main. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv; /* on CLOCK_MONOTONIC */
static int stop_signal;   /* the signal that asked us to stop, 0 if none */
static int producer_done; /* the producer finished (status below) */
static int producer_status;
static long enqueued, rejected;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int stopping(void) {
  pthread_mutex_lock(&mu);
  int s = stop_signal;
  pthread_mutex_unlock(&mu);
  return s;
}

/* Waits up to `ms` for a stop signal; returns non-zero if one came. */
static int wait_stop(long ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&mu);
  while (!stop_signal && pthread_cond_timedwait(&cv, &mu, &until) != ETIMEDOUT) {
  }
  int s = stop_signal;
  pthread_mutex_unlock(&mu);
  return s;
}

/* JSON string contents (without quotes) of `s` into `out` (size n); 0 if it
 * does not fit. */
static int json_escape(const char *s, char *out, size_t n) {
  size_t o = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char tmp[8];
    const char *piece = tmp;
    if (c == '"' || c == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)c;
      tmp[2] = 0;
    } else if (c < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", c);
    } else {
      tmp[0] = (char)c;
      tmp[1] = 0;
    }
    size_t len = strlen(piece);
    if (o + len + 1 > n) return 0;
    memcpy(out + o, piece, len);
    o += len;
  }
  out[o] = 0;
  return 1;
}

static int valid_sensor(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* Enqueues one reading as a durable job. `ts_ms` < 0: no timestamp given,
 * the job has no key (a key "<sensor>@<ts>" makes a re-read reading a
 * duplicate instead of a second webhook). Returns 0 or -1 (rejected). */
static int enqueue_reading(const char *sensor, double value, int64_t ts_ms, long seq) {
  char doc[512], key[128] = "";
  int64_t ts = ts_ms;
  if (ts < 0) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    ts = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  } else {
    snprintf(key, sizeof key, ",\"key\":\"%s@%lld\"", sensor, (long long)ts_ms);
  }
  snprintf(doc, sizeof doc,
           "{\"effect\":\"" READING_EFFECT
           "\"%s,\"payload\":{\"type\":\"sensor.reading\","
           "\"sensor\":\"%s\",\"value\":%.10g,\"ts\":%lld,\"seq\":%ld}}",
           key, sensor, value, (long long)ts, seq);
  char *id = NULL;
  int rc = wf_enqueue(engine, doc, &id);
  if (rc == WF_OK || rc == WF_EEXIST) {
    printf("reading %ld %s %.10g -> job %s%s\n", seq, sensor, value, id ? id : "?",
           rc == WF_EEXIST ? " (already queued or delivered)" : "");
    wf_free(id);
    pthread_mutex_lock(&mu);
    enqueued++;
    pthread_mutex_unlock(&mu);
    return 0;
  }
  fprintf(stderr, "reading %ld: wf_enqueue: %s: %s\n", seq, wf_strerror(rc), wf_last_error());
  return -1;
}

/* Parses "<sensor> <value> [<ts_ms>]". Returns 1 for a reading, 0 for a
 * blank or comment line, -1 for a bad one. */
static int parse_line(char *line, char *sensor, double *value, int64_t *ts) {
  char *hash = strchr(line, '#');
  if (hash) *hash = 0;
  char *save = NULL;
  char *s = strtok_r(line, " \t\r\n", &save);
  if (!s) return 0;
  char *v = strtok_r(NULL, " \t\r\n", &save);
  char *t = strtok_r(NULL, " \t\r\n", &save);
  if (!v || strtok_r(NULL, " \t\r\n", &save) || !valid_sensor(s)) return -1;
  char *end;
  errno = 0;
  *value = strtod(v, &end);
  if (*end || errno || !isfinite(*value)) return -1;
  *ts = -1;
  if (t) {
    long long x = strtoll(t, &end, 10);
    if (*end || errno || x < 0) return -1;
    *ts = x;
  }
  memcpy(sensor, s, strlen(s) + 1); /* valid_sensor: at most 64 bytes */
  return 1;
}

/* A simulated temperature sensor: xorshift64 from the seed, three sensors,
 * timestamps one second apart from a fixed instant. */
static int simulate(void) {
  uint64_t x = cfg.seed ? cfg.seed : 1;
  int bad = 0;
  for (long i = 0; i < cfg.simulate && !stopping(); i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    char sensor[16];
    snprintf(sensor, sizeof sensor, "temp-%ld", i % 3);
    double value = 15.0 + (double)(x % 2000) / 100.0; /* 15.00 .. 34.99 */
    if (enqueue_reading(sensor, value, INT64_C(1767225600000) + i * 1000, i + 1) != 0) bad = 1;
  }
  return bad;
}

static FILE *input; /* --readings, opened by main before the engine */

static int read_input(void) {
  FILE *f = input;
  char line[512], sensor[65];
  long lineno = 0, seq = 0;
  int bad = 0;
  while (!stopping() && fgets(line, sizeof line, f)) {
    lineno++;
    double value;
    int64_t ts;
    int r = parse_line(line, sensor, &value, &ts);
    if (r < 0) {
      fprintf(stderr, "%s:%ld: not a reading (want \"<sensor> <value> [<ts_ms>]\")\n", cfg.readings,
              lineno);
      pthread_mutex_lock(&mu);
      rejected++;
      pthread_mutex_unlock(&mu);
      bad = 1;
    } else if (r > 0 && enqueue_reading(sensor, value, ts, ++seq) != 0) {
      bad = 1;
    }
  }
  if (f != stdin) fclose(f);
  input = NULL;
  return bad;
}

/* Waits until no reading job is pending or running (the read API: jobs not
 * finished), polling a committed snapshot. Returns 0 all delivered, 2 some
 * became dead letters, 3 deadline, -1 stopped by a signal. */
static int wait_delivered(void) {
  int64_t deadline = mono_ms() + cfg.deliver_timeout_ms;
  for (;;) {
    char *json = NULL;
    int rc = wf_jobs_list(engine, "{\"effect\":\"" READING_EFFECT "\",\"limit\":1}", &json);
    if (rc != WF_OK) {
      fprintf(stderr, "wf_jobs_list: %s: %s\n", wf_strerror(rc), wf_last_error());
      return 1;
    }
    int empty = strstr(json, "\"jobs\":[]") != NULL;
    wf_free(json);
    if (empty) break;
    if (mono_ms() >= deadline) {
      fprintf(stderr, "readings still queued after %ld ms (kept; sent on the next run)\n",
              cfg.deliver_timeout_ms);
      return 3;
    }
    if (wait_stop(20)) return -1;
  }
  char *dead = NULL;
  if (wf_dead_list(engine, "{\"effect\":\"" READING_EFFECT "\",\"limit\":1}", &dead) != WF_OK)
    return 1;
  int none = strstr(dead, "[]") != NULL;
  wf_free(dead);
  if (!none) {
    fprintf(stderr, "some readings became dead letters (wfctl dead ls --effect %s)\n",
            READING_EFFECT);
    return 2;
  }
  return 0;
}

static void *producer(void *arg) {
  (void)arg;
  int bad = cfg.simulate >= 0 ? simulate() : read_input();
  int status = stopping() ? 0 : wait_delivered();
  if (status == 0 && !stopping()) {
    pthread_mutex_lock(&mu);
    printf("delivered: every queued reading (%ld from this run)\n", enqueued);
    pthread_mutex_unlock(&mu);
  }
  if (status < 0) status = 0; /* a signal: main closes */
  if (status == 0 && bad) status = 2;
  pthread_mutex_lock(&mu);
  producer_status = status;
  producer_done = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void *signal_waiter(void *arg) {
  sigset_t *set = arg;
  int sig = 0;
  if (sigwait(set, &sig) != 0) return NULL;
  pthread_mutex_lock(&mu);
  stop_signal = sig;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  return NULL;
}

/* The integer after "field": following `anchor` in a JSON text (enough for
 * wf_stats' output in this example; a real host would use its JSON parser). */
static long long json_int_after(const char *json, const char *anchor, const char *field) {
  const char *p = strstr(json, anchor);
  if (p) p = strstr(p, field);
  return p ? strtoll(p + strlen(field), NULL, 10) : -1;
}

/* The heartbeat schedule's job: a one-line summary from wf_stats. Runs on
 * the engine's loop thread, so it only reads (wf_stats never waits on the
 * writer) and completes at once. */
static void heartbeat(void *user, wf_job *job) {
  (void)user;
  char *stats = NULL;
  if (wf_stats(engine, "{\"effect\":\"" READING_EFFECT "\"}", &stats) == WF_OK) {
    pthread_mutex_lock(&mu);
    long accepted = enqueued;
    pthread_mutex_unlock(&mu);
    printf(
        "heartbeat fired (job %s): %ld readings accepted, %lld delivered, %lld queued, "
        "%lld dead\n",
        wf_job_key(job), accepted,
        json_int_after(stats, "\"effects\":{\"" READING_EFFECT "\":", "\"completed\":"),
        json_int_after(stats, "\"outbox\":", "\"ready\":") +
            json_int_after(stats, "\"outbox\":", "\"scheduled\":") +
            json_int_after(stats, "\"outbox\":", "\"running\":"),
        json_int_after(stats, "{", "\"dead\":"));
    wf_free(stats);
  }
  wf_job_complete(job, NULL);
}

static void usage(void) {
  fprintf(stderr,
          "usage: edge_appliance --db PATH --url URL [--secret SPEC] [--allow-private]\n"
          "                      [--readings FILE|-] [--simulate N [--seed S]]\n"
          "                      [--cron EXPR] [--deliver-timeout-ms MS]\n");
}

static int parse_args(int argc, char **argv) {
  cfg.secret = "env:EDGE_WHSEC";
  cfg.cron = "* * * * *";
  cfg.simulate = -1;
  cfg.seed = 42;
  cfg.deliver_timeout_ms = 30000;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end = NULL;
    if (strcmp(a, "--allow-private") == 0) {
      cfg.allow_private = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "%s: missing value\n", a);
      return -1;
    }
    i++;
    if (strcmp(a, "--db") == 0) {
      cfg.db = v;
    } else if (strcmp(a, "--url") == 0) {
      cfg.url = v;
    } else if (strcmp(a, "--secret") == 0) {
      cfg.secret = v;
    } else if (strcmp(a, "--readings") == 0) {
      cfg.readings = v;
    } else if (strcmp(a, "--cron") == 0) {
      cfg.cron = v;
    } else if (strcmp(a, "--simulate") == 0) {
      cfg.simulate = strtol(v, &end, 10);
      if (*end || cfg.simulate < 0) return fprintf(stderr, "--simulate: want N >= 0\n"), -1;
    } else if (strcmp(a, "--seed") == 0) {
      cfg.seed = strtoul(v, &end, 10);
      if (*end) return fprintf(stderr, "--seed: want a number\n"), -1;
    } else if (strcmp(a, "--deliver-timeout-ms") == 0) {
      cfg.deliver_timeout_ms = strtol(v, &end, 10);
      if (*end || cfg.deliver_timeout_ms < 0)
        return fprintf(stderr, "--deliver-timeout-ms: want MS >= 0\n"), -1;
    } else {
      fprintf(stderr, "unknown option %s\n", a);
      return -1;
    }
  }
  if (!cfg.db || !cfg.url) return fprintf(stderr, "--db and --url are required\n"), -1;
  if ((cfg.simulate >= 0) == (cfg.readings != NULL))
    return fprintf(stderr, "give one of --readings and --simulate\n"), -1;
  return 0;
}

#define CHECK(call)                                                                     \
  do {                                                                                  \
    int rc_ = (call);                                                                   \
    if (rc_ != WF_OK) {                                                                 \
      fprintf(stderr, "%s failed: %s: %s\n", #call, wf_strerror(rc_), wf_last_error()); \
      return 1;                                                                         \
    }                                                                                   \
  } while (0)

int main(int argc, char **argv) {
  if (parse_args(argc, argv) != 0) {
    usage();
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (cfg.readings) {
    input = strcmp(cfg.readings, "-") == 0 ? stdin : fopen(cfg.readings, "r");
    if (!input) {
      perror(cfg.readings);
      return 1;
    }
  }

  /* Signals: blocked in every thread (the engine's threads inherit the mask
   * from wf_open on), taken by sigwait on one thread; never wf_* in a signal
   * handler (docs/operations.md, "Draining on SIGTERM"). */
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&cv, &ca);

  CHECK(wf_open(cfg.db, "{\"durability\":\"full\"}", &engine));
  printf("edge_appliance: wfengine %s (static), database %s, sink %s\n", wf_version(), cfg.db,
         cfg.url);

  /* One signed webhook per reading. The secret reference is resolved here
   * and never stored; the job holds only the reading. */
  char url[2048], secret[1024], provider[4096];
  if (!json_escape(cfg.url, url, sizeof url) || !json_escape(cfg.secret, secret, sizeof secret)) {
    fprintf(stderr, "--url or --secret too long\n");
    wf_close(engine);
    return 1;
  }
  snprintf(provider, sizeof provider,
           "{\"type\":\"http\",\"url\":\"%s\",\"secrets\":[\"%s\"],"
           "\"allow_private_networks\":%s,\"timeout_ms\":5000,\"max_attempts\":10,"
           "\"backoff\":{\"base_ms\":200,\"cap_ms\":60000}}",
           url, secret, cfg.allow_private ? "true" : "false");
  int rc = wf_effect_register_builtin(engine, READING_EFFECT, provider);
  if (rc != WF_OK) {
    fprintf(stderr, "http provider: %s: %s\n", wf_strerror(rc), wf_last_error());
    wf_close(engine);
    return 1;
  }
  CHECK(wf_effect_register(engine, HEARTBEAT_EFFECT, NULL, heartbeat, NULL));

  /* The heartbeat: a durable cron schedule (replaced on every start, so a
   * changed --cron takes effect; a firing is never doubled). */
  char cron[256], sched[512];
  if (!json_escape(cfg.cron, cron, sizeof cron)) {
    fprintf(stderr, "--cron too long\n");
    wf_close(engine);
    return 1;
  }
  snprintf(sched, sizeof sched,
           "{\"key\":\"heartbeat\",\"cron\":\"%s\",\"catch_up\":\"latest\","
           "\"job\":{\"effect\":\"" HEARTBEAT_EFFECT "\",\"payload\":{\"appliance\":\"edge\"}}}",
           cron);
  rc = wf_schedule(engine, sched);
  if (rc != WF_OK) {
    fprintf(stderr, "heartbeat schedule: %s: %s\n", wf_strerror(rc), wf_last_error());
    wf_close(engine);
    return 1;
  }
  printf("heartbeat scheduled: cron \"%s\" (UTC)\n", cfg.cron);
  CHECK(wf_start(engine));

  pthread_t sig_thread, prod_thread;
  pthread_create(&sig_thread, NULL, signal_waiter, &set);
  pthread_detach(sig_thread);
  pthread_create(&prod_thread, NULL, producer, NULL);

  pthread_mutex_lock(&mu);
  while (!stop_signal && !producer_done) pthread_cond_wait(&cv, &mu);
  int sig = stop_signal, status = producer_done ? producer_status : 0;
  pthread_mutex_unlock(&mu);
  if (sig) printf("signal %d: draining\n", sig);

  /* Stop claiming, let attempts in flight finish, then close: whatever is
   * left stays queued in the file for the next run. */
  rc = wf_drain(engine, 10000);
  if (rc != WF_OK && rc != WF_ETIMEDOUT)
    fprintf(stderr, "wf_drain: %s: %s\n", wf_strerror(rc), wf_last_error());
  rc = wf_close(engine);
  if (rc != WF_OK) {
    fprintf(stderr, "wf_close: %s: %s\n", wf_strerror(rc), wf_last_error());
    return 1;
  }
  pthread_mutex_lock(&mu);
  printf("closed: %ld readings accepted, %ld lines rejected\n", enqueued, rejected);
  pthread_mutex_unlock(&mu);
  /* After a signal the producer notices the stop between readings (its
   * calls on the closed engine return WF_ECLOSED); one blocked reading its
   * input is left behind: the process exits. */
  struct timespec give_up;
  clock_gettime(CLOCK_MONOTONIC, &give_up);
  give_up.tv_sec += 1;
  pthread_mutex_lock(&mu);
  while (!producer_done && pthread_cond_timedwait(&cv, &mu, &give_up) != ETIMEDOUT) {
  }
  int joinable = producer_done;
  pthread_mutex_unlock(&mu);
  if (joinable) pthread_join(prod_thread, NULL);
  return status;
}
