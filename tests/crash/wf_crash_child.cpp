// wf_crash_child — the victim process of the kill -9 test (crash_test.cpp).
//
// Usage: wf_crash_child <db path> <ack log> <child number> [delivered log]
//
// Opens the engine with full durability, relays jobs of effect "sink" to a
// callback that records each delivery in the delivered log (default:
// "<ack log>.delivered") and completes the job, and runs kThreads threads that
// enqueue keyed jobs forever. A key is appended to the ack log only after
// wf_enqueue returned WF_OK. Every log line is one write(2) on an O_APPEND
// descriptor: it reaches the page cache before the next job is attempted, so
// it survives SIGKILL of this process without fsync.
//
// It never exits on its own; the parent kills it. Exit status 2 means the
// engine could not be set up.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "wfengine.h"

namespace {

constexpr int kThreads = 4;

int g_ack_fd = -1;
int g_delivered_fd = -1;
std::atomic<int> g_errors{0};

// One line, one write(2): O_APPEND makes it atomic with respect to other
// writers, and short writes to a regular file only happen when we are dying.
void append_line(int fd, const std::string& line) {
  for (;;) {
    ssize_t n = ::write(fd, line.data(), line.size());
    if (n >= 0 || errno != EINTR) break;
  }
}

void sink(void* /*user*/, wf_job* job) {
  // Record before completing: a delivery is logged even if we die before the
  // completion is committed (the job is then delivered again after reopen).
  append_line(g_delivered_fd, std::string(wf_job_key(job)) + "\n");
  int rc = wf_job_complete(job, nullptr);
  if (rc != WF_OK && rc != WF_ESTATE && g_errors.fetch_add(1) < 10) {
    std::fprintf(stderr, "wf_crash_child: wf_job_complete: %s\n", wf_strerror(rc));
  }
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
    } else if (g_errors.fetch_add(1) < 10) {
      std::fprintf(stderr, "wf_crash_child: wf_enqueue(%s): %s: %s\n", key.c_str(), wf_strerror(rc),
                   wf_last_error());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr, "usage: %s <db> <ack log> <child number> [delivered log]\n", argv[0]);
    return 2;
  }
  const char* db = argv[1];
  std::string ack_path = argv[2];
  int child = std::atoi(argv[3]);
  std::string delivered_path = argc == 5 ? argv[4] : ack_path + ".delivered";

  g_ack_fd = ::open(ack_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  g_delivered_fd = ::open(delivered_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (g_ack_fd < 0 || g_delivered_fd < 0) {
    std::perror("wf_crash_child: open log");
    return 2;
  }

  wf_engine* e = nullptr;
  int rc = wf_open(db, "{\"durability\":\"full\"}", &e);
  if (rc != WF_OK) {
    std::fprintf(stderr, "wf_crash_child: wf_open(%s): %s: %s\n", db, wf_strerror(rc),
                 wf_last_error());
    return 2;
  }
  rc = wf_effect_register(e, "sink", nullptr, sink, nullptr);
  if (rc == WF_OK) rc = wf_start(e);
  if (rc != WF_OK) {
    std::fprintf(stderr, "wf_crash_child: register/start: %s: %s\n", wf_strerror(rc),
                 wf_last_error());
    return 2;
  }

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) threads.emplace_back(enqueuer, e, child, t);
  for (auto& t : threads) t.join();  // never returns: the parent sends SIGKILL
  return 0;
}
