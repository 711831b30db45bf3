// metrics: counters and histograms (metrics.h) and their exposition.
#include "metrics.h"

#include <chrono>
#include <cstdio>

namespace wf {

const int64_t kDurationBoundsUs[15] = {1000,    5000,     10000,    25000,    50000,
                                       100000,  250000,   500000,   1000000,  2500000,
                                       5000000, 10000000, 30000000, 60000000, 300000000};
const int64_t kCommitBoundsUs[13] = {50,    100,   250,   500,    1000,   2500,   5000,
                                     10000, 25000, 50000, 100000, 250000, 1000000};
const int64_t kBatchBounds[12] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

int64_t mono_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string prom_escape(const std::string &v) {
  std::string r;
  r.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      r.push_back('\\');
      r.push_back(c);
    } else if (c == '\n') {
      r += "\\n";
    } else {
      r.push_back(c);
    }
  }
  return r;
}

namespace {
std::string num(double v) {
  char b[64];
  (void)std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}
}  // namespace

void Histogram::write(std::string &out, const std::string &name, const std::string &labels,
                      double scale) const {
  uint64_t cum = 0;
  for (size_t i = 0; i <= n_; ++i) {
    cum += buckets_[i].load(std::memory_order_relaxed);
    std::string le = i < n_ ? num(static_cast<double>(bounds_[i]) / scale) : "+Inf";
    out += name + "_bucket{" + labels + "le=\"" + le + "\"} " + std::to_string(cum) + "\n";
  }
  std::string l = labels.empty() ? "" : "{" + labels.substr(0, labels.size() - 1) + "}";
  out += name + "_sum" + l + " " +
         num(static_cast<double>(sum_.load(std::memory_order_relaxed)) / scale) + "\n";
  // The count is the +Inf bucket (the sum may lag it by an observation).
  out += name + "_count" + l + " " + std::to_string(cum) + "\n";
}

JobCounters &Metrics::job(const std::string &effect, const std::string &tenant) {
  std::lock_guard<std::mutex> g(mu_);
  auto &p = jobs_[{effect, by_tenant ? tenant : std::string()}];
  if (!p) p = std::make_unique<JobCounters>();
  return *p;
}

Histogram &Metrics::saga_step(const std::string &saga) {
  std::lock_guard<std::mutex> g(mu_);
  auto &p = sagas_[saga];
  if (!p) p = std::make_unique<Histogram>(kDurationBoundsUs, 15);
  return *p;
}

std::vector<Metrics::Tally> Metrics::tally(const lease::CountDeltas &d) {
  std::vector<Tally> t;
  for (const auto &[k, v] : d.rows)
    if (v.enqueued || v.interrupted)
      t.push_back(Tally{&job(k.first, k.second), v.enqueued, v.interrupted});
  return t;
}

void Metrics::write(std::string &o) {
  std::vector<std::pair<std::string, JobCounters *>> jobs;  // (labels, counters)
  std::vector<std::pair<std::string, Histogram *>> sagas;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto &[k, c] : jobs_) {
      std::string l = "effect=\"" + prom_escape(k.first) + "\",";
      if (by_tenant) l += "tenant=\"" + prom_escape(k.second) + "\",";
      jobs.emplace_back(std::move(l), c.get());
    }
    for (auto &[k, h] : sagas_) sagas.emplace_back("saga=\"" + prom_escape(k) + "\",", h.get());
  }
  auto head = [&](const std::string &name, const char *help, const char *type) {
    o += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto lab = [](const std::string &l) { return "{" + l.substr(0, l.size() - 1) + "}"; };
  struct C {
    const char *name, *help;
    std::atomic<int64_t> JobCounters::*m;
  };
  static const C counters[] = {
      {"wfengine_jobs_enqueued_total",
       "Jobs inserted into the outbox (duplicates by key excluded).", &JobCounters::enqueued},
      {"wfengine_jobs_dispatched_total", "Attempts handed to a provider.",
       &JobCounters::dispatched},
      {"wfengine_jobs_completed_total", "Attempts completed successfully.",
       &JobCounters::completed},
      {"wfengine_jobs_retried_total", "Failed attempts followed by a scheduled retry.",
       &JobCounters::retried},
      {"wfengine_jobs_failed_total",
       "Attempts that failed (wf_job_retry, wf_job_fail or timeout), retried or not.",
       &JobCounters::failed},
      {"wfengine_jobs_dead_lettered_total", "Jobs moved to the dead letters.", &JobCounters::dead},
      {"wfengine_jobs_interrupted_total",
       "Attempts interrupted (their engine stopped, or their lease expired) and returned to the "
       "queue.",
       &JobCounters::interrupted},
      {"wfengine_jobs_timeouts_total", "Attempts that ran past the effect's timeout_ms.",
       &JobCounters::timeouts},
  };
  for (const auto &c : counters) {
    head(c.name, c.help, "counter");
    for (auto &[l, jc] : jobs)
      o += std::string(c.name) + lab(l) + " " +
           std::to_string((jc->*(c.m)).load(std::memory_order_relaxed)) + "\n";
  }
  head("wfengine_effect_duration_seconds",
       "Time from dispatch to the attempt's outcome (completion, failure or timeout).",
       "histogram");
  for (auto &[l, jc] : jobs) jc->duration.write(o, "wfengine_effect_duration_seconds", l, 1e6);
  head("wfengine_job_dispatch_latency_seconds",
       "Time from when a job was due (enqueue time, or its run_at / retry time) to its dispatch.",
       "histogram");
  for (auto &[l, jc] : jobs) jc->latency.write(o, "wfengine_job_dispatch_latency_seconds", l, 1e6);
  struct G {
    const char *name, *help;
    std::atomic<int64_t> Metrics::*m;
  };
  static const G globals[] = {
      {"wfengine_events_submitted_total",
       "Events stored by wf_submit (and its tx and async forms) and by schedules; duplicates and "
       "job outcome events excluded.",
       &Metrics::events_submitted},
      {"wfengine_events_applied_total", "Events applied to a saga instance by its reducer.",
       &Metrics::events_applied},
      {"wfengine_events_unmatched_total", "Events stored that no registered saga took.",
       &Metrics::events_unmatched},
      {"wfengine_events_parked_total", "Saga events parked as dead letters (reducer failed).",
       &Metrics::events_parked},
      {"wfengine_schedules_fired_total", "Schedule firings (one per due time fired).",
       &Metrics::schedules_fired},
  };
  for (const auto &g : globals) {
    head(g.name, g.help, "counter");
    o += std::string(g.name) + " " +
         std::to_string((this->*(g.m)).load(std::memory_order_relaxed)) + "\n";
  }
  head("wfengine_commit_duration_seconds", "Time the writer's COMMIT took (group commit).",
       "histogram");
  commit_latency.write(o, "wfengine_commit_duration_seconds", "", 1e6);
  head("wfengine_commit_batch_size", "Write requests committed together in one transaction.",
       "histogram");
  batch_size.write(o, "wfengine_commit_batch_size", "", 1);
  head("wfengine_schedule_lateness_seconds",
       "Time from a schedule's due time to the transaction that fired it.", "histogram");
  schedule_lateness.write(o, "wfengine_schedule_lateness_seconds", "", 1e6);
  head("wfengine_saga_step_duration_seconds",
       "Time one saga step took on the loop: reducer calls and output checks for the events "
       "folded in the step.",
       "histogram");
  for (auto &[l, h] : sagas) h->write(o, "wfengine_saga_step_duration_seconds", l, 1e6);
}

}  // namespace wf
