// wf_crash_child — the victim process of the kill -9 test (crash_test.cpp).
//
// Usage: wf_crash_child <db path> <ack log> <child number> [delivered log
//        [event ack log schedule ack log schedule delivered log]]
//
// Opens the engine with full durability and runs three workloads until the
// parent kills it:
//  - jobs: kJobThreads threads enqueue keyed jobs of effect "sink"; a key is
//    appended to the ack log only after wf_enqueue returned WF_OK. The "sink"
//    callback records each delivery in the delivered log (default
//    "<ack log>.delivered") and completes the job.
//  - events: kEventThreads threads submit events of type "inc" to the shared
//    instances of the saga in crash_saga.h; "<event id> <instance>" is logged
//    to the event ack log (default "<ack log>.events") after wf_submit
//    returned WF_OK.
//  - schedules: kScheduleThreads threads create one-shot schedules due 0 to
//    200 ms later whose job has effect "sched"; "<schedule key> <due ms>" is
//    logged to the schedule ack log (default "<ack log>.schedules") after
//    wf_schedule returned WF_OK. The "sched" callback records
//    "<job key> <job id>" in the schedule delivered log (default
//    "<ack log>.schedules.delivered") and completes the job.
// Every log line is one write(2) on an O_APPEND descriptor: it reaches the
// page cache before the next item is attempted, so it survives SIGKILL of this
// process without fsync.
//
// It never exits on its own; the parent kills it. Exit status 2 means the
// engine could not be set up.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crash_saga.h"
#include "wfengine.h"

namespace {

constexpr int kJobThreads = 4;
constexpr int kEventThreads = 2;
constexpr int kScheduleThreads = 1;

int g_ack_fd = -1;
int g_delivered_fd = -1;
int g_event_ack_fd = -1;
int g_sched_ack_fd = -1;
int g_sched_delivered_fd = -1;
std::atomic<int> g_errors{0};

// One line, one write(2): O_APPEND makes it atomic with respect to other
// writers, and short writes to a regular file only happen when we are dying.
void append_line(int fd, const std::string& line) {
  for (;;) {
    ssize_t n = ::write(fd, line.data(), line.size());
    if (n >= 0 || errno != EINTR) break;
  }
}

void report(const char* what, const std::string& item, int rc) {
  if (g_errors.fetch_add(1) < 10) {
    std::fprintf(stderr, "wf_crash_child: %s(%s): %s: %s\n", what, item.c_str(), wf_strerror(rc),
                 wf_last_error());
  }
}

void sink(void* /*user*/, wf_job* job) {
  // Record before completing: a delivery is logged even if we die before the
  // completion is committed (the job is then delivered again after reopen).
  append_line(g_delivered_fd, std::string(wf_job_key(job)) + "\n");
  int rc = wf_job_complete(job, nullptr);
  if (rc != WF_OK && rc != WF_ESTATE) report("wf_job_complete", "sink", rc);
}

void sched(void* /*user*/, wf_job* job) {
  // The job id tells a redelivery of one job (same id) from a second firing
  // that enqueued another job (new id).
  append_line(g_sched_delivered_fd,
              std::string(wf_job_key(job)) + " " + std::string(wf_job_id(job)) + "\n");
  int rc = wf_job_complete(job, nullptr);
  if (rc != WF_OK && rc != WF_ESTATE) report("wf_job_complete", "sched", rc);
}

void enqueuer(wf_engine* e, int child, int thread) {
  for (long n = 0;; n++) {
    std::string key =
        "c" + std::to_string(child) + "-t" + std::to_string(thread) + "-" + std::to_string(n);
    std::string job = "{\"effect\":\"sink\",\"key\":\"" + key +
                      "\",\"payload\":{\"child\":" + std::to_string(child) +
                      ",\"thread\":" + std::to_string(thread) + ",\"n\":" + std::to_string(n) +
                      ",\"pad\":\"0123456789abcdef0123456789abcdef\"}}";
    char* id = nullptr;
    int rc = wf_enqueue(e, job.c_str(), &id);
    wf_free(id);
    if (rc == WF_OK) {
      append_line(g_ack_fd, key + "\n");
    } else {
      report("wf_enqueue", key, rc);
    }
  }
}

void submitter(wf_engine* e, int child, int thread) {
  for (long n = 0;; n++) {
    // Consecutive events of a thread go to different instances, and every
    // child starts at another one, so all instances see all children.
    std::string inst = crash::instance_id(child + thread * 5 + n);
    std::string id =
        "c" + std::to_string(child) + "-e" + std::to_string(thread) + "-" + std::to_string(n);
    std::string ev = "{\"event_id\":\"" + id + "\",\"type\":\"inc\",\"correlation_id\":\"" + inst +
                     "\",\"payload\":{\"id\":\"" + id + "\"}}";
    int rc = wf_submit(e, ev.c_str());
    if (rc == WF_OK) {
      append_line(g_event_ack_fd, id + " " + inst + "\n");
    } else {
      report("wf_submit", id, rc);
    }
  }
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void scheduler(wf_engine* e, int child, int thread) {
  std::mt19937 rng(static_cast<unsigned>(child * 131 + thread));
  std::uniform_int_distribution<int> ahead(0, 200);
  for (long n = 0;; n++) {
    std::string key =
        "c" + std::to_string(child) + "-s" + std::to_string(thread) + "-" + std::to_string(n);
    int64_t at = now_ms() + ahead(rng);
    std::string doc = "{\"key\":\"" + key + "\",\"at\":" + std::to_string(at) +
                      ",\"job\":{\"effect\":\"" + crash::kSchedEffect +
                      "\",\"payload\":{\"schedule\":\"" + key + "\"}}}";
    int rc = wf_schedule(e, doc.c_str());
    if (rc == WF_OK) {
      append_line(g_sched_ack_fd, key + " " + std::to_string(at) + "\n");
    } else {
      report("wf_schedule", key, rc);
    }
  }
}

int open_log(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5 && argc != 8) {
    std::fprintf(stderr,
                 "usage: %s <db> <ack log> <child number> [delivered log [event ack log "
                 "schedule ack log schedule delivered log]]\n",
                 argv[0]);
    return 2;
  }
  const char* db = argv[1];
  std::string ack_path = argv[2];
  int child = std::atoi(argv[3]);
  std::string delivered_path = argc >= 5 ? argv[4] : ack_path + ".delivered";
  std::string event_ack_path = argc == 8 ? argv[5] : ack_path + ".events";
  std::string sched_ack_path = argc == 8 ? argv[6] : ack_path + ".schedules";
  std::string sched_delivered_path = argc == 8 ? argv[7] : ack_path + ".schedules.delivered";

  g_ack_fd = open_log(ack_path);
  g_delivered_fd = open_log(delivered_path);
  g_event_ack_fd = open_log(event_ack_path);
  g_sched_ack_fd = open_log(sched_ack_path);
  g_sched_delivered_fd = open_log(sched_delivered_path);
  if (g_ack_fd < 0 || g_delivered_fd < 0 || g_event_ack_fd < 0 || g_sched_ack_fd < 0 ||
      g_sched_delivered_fd < 0) {
    std::perror("wf_crash_child: open log");
    return 2;
  }

  wf_engine* e = nullptr;
  // Killed 60 times on purpose: its in-flight jobs are not poison pills.
  int rc = wf_open(db, "{\"durability\":\"full\",\"max_interruptions\":1000000}", &e);
  if (rc != WF_OK) {
    std::fprintf(stderr, "wf_crash_child: wf_open(%s): %s: %s\n", db, wf_strerror(rc),
                 wf_last_error());
    return 2;
  }
  // The saga routes events at submit time: register it before any wf_submit.
  rc = wf_effect_register(e, "sink", nullptr, sink, nullptr);
  if (rc == WF_OK) rc = wf_effect_register(e, crash::kSchedEffect, nullptr, sched, nullptr);
  if (rc == WF_OK)
    rc = wf_saga_register(e, crash::kSagaName, crash::kSagaSpec, crash::saga_reducer, nullptr);
  if (rc == WF_OK) rc = wf_start(e);
  if (rc != WF_OK) {
    std::fprintf(stderr, "wf_crash_child: register/start: %s: %s\n", wf_strerror(rc),
                 wf_last_error());
    return 2;
  }

  std::vector<std::thread> threads;
  for (int t = 0; t < kJobThreads; t++) threads.emplace_back(enqueuer, e, child, t);
  for (int t = 0; t < kEventThreads; t++) threads.emplace_back(submitter, e, child, t);
  for (int t = 0; t < kScheduleThreads; t++) threads.emplace_back(scheduler, e, child, t);
  for (auto& t : threads) t.join();  // never returns: the parent sends SIGKILL
  return 0;
}
