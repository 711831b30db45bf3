// metrics: the counters and histograms behind wf_metrics (Prometheus text
// exposition). Every update is one or two relaxed atomic adds on memory the
// updater already found; registries (by effect, by saga) are looked up once
// per dispatch or per transaction, never per row in the writer.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lease.h"

namespace wf {

// A histogram with fixed upper bounds (integers: microseconds for durations,
// plain counts otherwise). Buckets are kept non-cumulative (one add per
// observation) and summed when written out.
class Histogram {
 public:
  static constexpr size_t kMaxBounds = 16;
  Histogram(const int64_t *bounds, size_t n)
      : bounds_(bounds), n_(n < kMaxBounds ? n : kMaxBounds) {}
  void observe(int64_t v) {
    size_t i = 0;
    while (i < n_ && v > bounds_[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }
  // Appends the _bucket/_sum/_count lines of `name` with `labels` (already
  // formatted, `a="b",` with a trailing comma, or ""). `scale` divides the
  // bounds and the sum (1e6: microseconds written as seconds).
  void write(std::string &out, const std::string &name, const std::string &labels,
             double scale) const;

 private:
  const int64_t *bounds_;
  size_t n_;
  std::array<std::atomic<uint64_t>, kMaxBounds + 1> buckets_{};
  std::atomic<int64_t> sum_{0};
};

extern const int64_t kDurationBoundsUs[15];  // 1 ms .. 5 min
extern const int64_t kCommitBoundsUs[13];    // 50 us .. 1 s
extern const int64_t kBatchBounds[12];       // 1 .. 4096 requests

// Job counters of one effect (and one tenant when metrics_by_tenant is on).
struct JobCounters {
  std::atomic<int64_t> enqueued{0}, dispatched{0}, completed{0}, retried{0}, failed{0}, dead{0},
      interrupted{0}, timeouts{0};
  Histogram duration{kDurationBoundsUs, 15};  // dispatch to outcome
  Histogram latency{kDurationBoundsUs, 15};   // due (run_at) to dispatch
};

struct Metrics {
  bool by_tenant = false;  // option metrics_by_tenant
  // Stable references: entries are never removed while the engine lives.
  JobCounters &job(const std::string &effect, const std::string &tenant);
  Histogram &saga_step(const std::string &saga);

  std::atomic<int64_t> events_submitted{0}, events_applied{0}, events_unmatched{0},
      events_parked{0}, schedules_fired{0};
  Histogram commit_latency{kCommitBoundsUs, 13};
  Histogram batch_size{kBatchBounds, 12};
  Histogram schedule_lateness{kDurationBoundsUs, 15};

  // A transaction's enqueued / interrupted counts (from its count deltas),
  // taken before the deltas are flushed and added once it committed.
  struct Tally {
    JobCounters *c;
    int64_t enqueued, interrupted;
  };
  std::vector<Tally> tally(const lease::CountDeltas &d);
  static void apply(const std::vector<Tally> &t) {
    for (auto &x : t) {
      if (x.enqueued) x.c->enqueued.fetch_add(x.enqueued, std::memory_order_relaxed);
      if (x.interrupted) x.c->interrupted.fetch_add(x.interrupted, std::memory_order_relaxed);
    }
  }

  // Appends the counters and histograms (exposition format).
  void write(std::string &out);

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<JobCounters>>
      jobs_;                                                 // GUARDED_BY(mu_)
  std::map<std::string, std::unique_ptr<Histogram>> sagas_;  // GUARDED_BY(mu_)
};

// Prometheus label value escaping (backslash, double quote, newline).
std::string prom_escape(const std::string &v);

// Microseconds on a monotonic clock (durations for the histograms).
int64_t mono_us();

}  // namespace wf
