// Telemetry: wf_metrics names and values after a known workload (with an
// exposition-format parser check and promtool when installed), structured
// log fields and the event vocabulary, secrets never logged, W3C trace
// context through a saga into a provider.
#include <sys/wait.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "helpers.h"

using namespace wft;

namespace {

std::string metrics_text(wf_engine *e) {
  char *m = nullptr;
  EXPECT_EQ(WF_OK, wf_metrics(e, &m)) << wf_last_error();
  std::string s = m ? m : "";
  wf_free(m);
  return s;
}

// The value of the sample `name{labels}` (labels as written, "" for none);
// -1 if absent.
double sample(const std::string &text, const std::string &series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, series.size() + 1, series + " ") == 0)
      return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

// Checks the text exposition format (0.0.4): every sample belongs to a family
// announced by HELP and TYPE before it, names and labels are well formed,
// values are numbers, a family's samples are contiguous, counters end in
// _total, histogram buckets are cumulative with a +Inf bucket equal to
// _count. Returns the problems found ("" if none).
std::string check_exposition(const std::string &text) {
  std::ostringstream bad;
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  static const std::regex samp(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$)");
  std::map<std::string, std::string> types;
  std::set<std::string> helped, done;
  std::string current;
  std::map<std::string, double> last_bucket;  // per series without le
  std::map<std::string, double> inf_bucket;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (line.empty()) {
      bad << "line " << n << ": empty\n";
    } else if (line[0] == '#') {
      if (std::regex_match(line, m, help)) {
        if (helped.count(m[1])) bad << "line " << n << ": second HELP for " << m[1] << "\n";
        helped.insert(m[1]);
      } else if (std::regex_match(line, m, type)) {
        if (types.count(m[1])) bad << "line " << n << ": second TYPE for " << m[1] << "\n";
        if (!helped.count(m[1])) bad << "line " << n << ": TYPE before HELP for " << m[1] << "\n";
        types[m[1]] = m[2];
        if (!current.empty()) done.insert(current);
        current = m[1];
        if (m[2] == "counter" && current.size() > 6 &&
            current.compare(current.size() - 6, 6, "_total") != 0)
          bad << "line " << n << ": counter " << current << " does not end in _total\n";
      } else {
        bad << "line " << n << ": bad comment: " << line << "\n";
      }
    } else if (std::regex_match(line, m, samp)) {
      std::string name = m[1];
      std::string fam = name;
      for (const char *suf : {"_bucket", "_sum", "_count"}) {
        size_t k = std::string(suf).size();
        if (!types.count(fam) && name.size() > k && name.compare(name.size() - k, k, suf) == 0)
          fam = name.substr(0, name.size() - k);
      }
      if (!types.count(fam)) bad << "line " << n << ": sample without TYPE: " << name << "\n";
      if (fam != current) bad << "line " << n << ": sample of " << fam << " outside its family\n";
      if (done.count(fam)) bad << "line " << n << ": family " << fam << " not contiguous\n";
      if (types[fam] == "histogram" && name == fam + "_bucket") {
        std::string labels = m[2];
        size_t le = labels.find("le=\"");
        if (le == std::string::npos) {
          bad << "line " << n << ": bucket without le\n";
          continue;
        }
        std::string key = fam + labels.substr(0, le);
        double v = std::stod(line.substr(line.rfind(' ') + 1));
        if (last_bucket.count(key) && v < last_bucket[key])
          bad << "line " << n << ": buckets not cumulative\n";
        last_bucket[key] = v;
        if (labels.find("le=\"+Inf\"") != std::string::npos) inf_bucket[key] = v;
      } else if (types[fam] == "histogram" && name == fam + "_count") {
        std::string labels = m[2];
        std::string key = fam + (labels.empty() ? "{" : labels.substr(0, labels.size() - 1) + ",");
        double v = std::stod(line.substr(line.rfind(' ') + 1));
        if (!inf_bucket.count(key) || inf_bucket[key] != v)
          bad << "line " << n << ": _count differs from the +Inf bucket (" << key << ")\n";
      }
    } else {
      bad << "line " << n << ": not a sample: " << line << "\n";
    }
  }
  return bad.str();
}

// promtool check metrics when promtool is installed (scripts/deps.sh
// installs Debian's prometheus package): "" if it is not, else its verdict.
std::string promtool_check(const std::string &dir, const std::string &text, bool *ran) {
  *ran = system("command -v promtool >/dev/null 2>&1") == 0;
  if (!*ran) return "";
  std::string f = dir + "/metrics.txt";
  FILE *o = std::fopen(f.c_str(), "w");
  std::fwrite(text.data(), 1, text.size(), o);
  std::fclose(o);
  std::string cmd = "promtool check metrics < '" + f + "' > '" + f + ".out' 2>&1";
  int rc = system(cmd.c_str());
  if (rc == 0) return "";
  return "promtool failed: " + slurp(f + ".out");
}

struct Handlers {
  // payload "ok": complete; "fail": wf_job_fail; "flaky": retry once then
  // complete.
  static void handle(wf_job *j) {
    size_t len = 0;
    const char *data = wf_job_payload(j, &len);
    std::string p(data, len);
    if (p == "\"fail\"")
      EXPECT_EQ(WF_OK, wf_job_fail(j, "permanent"));
    else if (p == "\"flaky\"" && wf_job_attempt(j) == 1)
      EXPECT_EQ(WF_OK, wf_job_retry(j, "try again", 0));
    else
      EXPECT_EQ(WF_OK, wf_job_complete(j, nullptr));
  }
};

class TelemetryTest : public EngineTest {};

TEST_F(TelemetryTest, MetricsAfterAKnownWorkload) {
  open();
  Sink sink;
  sink.handler = Handlers::handle;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"max_attempts\":3}", Sink::cb, &sink));
  enqueue({{"effect", "x"}, {"payload", "ok"}});
  enqueue({{"effect", "x"}, {"payload", "fail"}});
  enqueue({{"effect", "x"}, {"payload", "flaky"}});
  enqueue({{"effect", "x"}, {"payload", "ok"}, {"key", "k"}});
  enqueue({{"effect", "x"}, {"payload", "ok"}, {"key", "k"}}, WF_EEXIST);  // not counted
  ASSERT_EQ(WF_OK, wf_submit(e, "{\"event_id\":\"e1\",\"type\":\"nobody.cares\"}"));
  ASSERT_EQ(WF_OK, wf_schedule(e, "{\"key\":\"s\",\"delay_ms\":0,\"job\":{\"effect\":\"y\"}}"));
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait_count(5));  // 4 jobs, one of them twice
  sync();
  ASSERT_TRUE(sink.wait([&] { return stats()["outbox"]["ready"] == 1; }, 10000));  // y fired
  std::string m = metrics_text(e);
  EXPECT_EQ(4, sample(m, "wfengine_jobs_enqueued_total{effect=\"x\"}")) << m;
  EXPECT_EQ(1, sample(m, "wfengine_jobs_enqueued_total{effect=\"y\"}"));
  EXPECT_EQ(5, sample(m, "wfengine_jobs_dispatched_total{effect=\"x\"}"));
  EXPECT_EQ(3, sample(m, "wfengine_jobs_completed_total{effect=\"x\"}"));
  EXPECT_EQ(1, sample(m, "wfengine_jobs_retried_total{effect=\"x\"}"));
  EXPECT_EQ(2, sample(m, "wfengine_jobs_failed_total{effect=\"x\"}"));
  EXPECT_EQ(1, sample(m, "wfengine_jobs_dead_lettered_total{effect=\"x\"}"));
  EXPECT_EQ(0, sample(m, "wfengine_jobs_interrupted_total{effect=\"x\"}"));
  EXPECT_EQ(5, sample(m, "wfengine_effect_duration_seconds_count{effect=\"x\"}"));
  EXPECT_EQ(5, sample(m, "wfengine_job_dispatch_latency_seconds_count{effect=\"x\"}"));
  EXPECT_EQ(1, sample(m, "wfengine_events_submitted_total"));
  EXPECT_EQ(1, sample(m, "wfengine_events_unmatched_total"));
  EXPECT_EQ(1, sample(m, "wfengine_unmatched_events"));
  EXPECT_EQ(1, sample(m, "wfengine_schedules_fired_total"));
  EXPECT_EQ(1, sample(m, "wfengine_schedule_lateness_seconds_count"));
  EXPECT_EQ(1, sample(m, "wfengine_outbox_jobs{effect=\"y\",state=\"ready\"}"));
  EXPECT_LE(sample(m, "wfengine_outbox_jobs{effect=\"x\",state=\"ready\"}"), 0);  // no row
  EXPECT_EQ(1, sample(m, "wfengine_dead_letters"));
  EXPECT_EQ(0, sample(m, "wfengine_inflight_attempts"));
  EXPECT_EQ(0, sample(m, "wfengine_circuit_state{effect=\"x\"}"));
  EXPECT_GT(sample(m, "wfengine_commit_batch_size_count"), 0);
  EXPECT_GT(sample(m, "wfengine_commit_duration_seconds_count"), 0);
  EXPECT_GT(sample(m, "wfengine_commits_total"), 0);
  EXPECT_GT(sample(m, "wfengine_wal_size_bytes"), 0);
  EXPECT_EQ(1, sample(m, std::string("wfengine_build_info{version=\"") + wf_version() + "\"}"));
  // No tenant label unless metrics_by_tenant.
  EXPECT_EQ(std::string::npos, m.find("tenant=")) << m;
  EXPECT_EQ("", check_exposition(m)) << m;
  bool ran = false;
  EXPECT_EQ("", promtool_check(dir, m, &ran));
  if (!ran) std::fprintf(stderr, "promtool not installed: exposition checked by the parser only\n");
}

TEST_F(TelemetryTest, TenantLabelsOnlyWhenAsked) {
  open("{\"durability\":\"normal\",\"metrics_by_tenant\":true}");
  enqueue({{"effect", "x"}, {"tenant", "acme"}});
  enqueue({{"effect", "x"}, {"tenant", "we\"ird\\"}});
  std::string m = metrics_text(e);
  EXPECT_EQ(1, sample(m, "wfengine_jobs_enqueued_total{effect=\"x\",tenant=\"acme\"}")) << m;
  EXPECT_EQ(1, sample(m, "wfengine_jobs_enqueued_total{effect=\"x\",tenant=\"we\\\"ird\\\\\"}"))
      << m;
  EXPECT_EQ("", check_exposition(m)) << m;
  bool ran = false;
  EXPECT_EQ("", promtool_check(dir, m, &ran));
  wf_engine *x = nullptr;
  EXPECT_EQ(WF_EINVAL, wf_open((dir + "/b.db").c_str(), "{\"metrics_by_tenant\":1}", &x));
  EXPECT_NE(std::string(wf_last_error()).find("metrics_by_tenant"), std::string::npos);
}

// The alert rules of docs/operations.md pass promtool check rules.
TEST_F(TelemetryTest, AlertRulesInTheDocsAreValid) {
  if (system("command -v promtool >/dev/null 2>&1") != 0) GTEST_SKIP() << "promtool not installed";
  std::string doc = slurp(std::string(WF_SOURCE_DIR) + "/docs/operations.md");
  size_t a = doc.find("```yaml\ngroups:");
  ASSERT_NE(std::string::npos, a) << "no rules block in docs/operations.md";
  a += 8;
  size_t b = doc.find("```", a);
  std::string f = dir + "/rules.yml";
  FILE *o = std::fopen(f.c_str(), "w");
  std::string rules = doc.substr(a, b - a);
  std::fwrite(rules.data(), 1, rules.size(), o);
  std::fclose(o);
  std::string cmd = "promtool check rules '" + f + "' > '" + f + ".out' 2>&1";
  EXPECT_EQ(0, system(cmd.c_str())) << slurp(f + ".out");
}

// Structured lines: level, message, event and the ids in play; debug events
// only at debug level; payloads and the encryption key never in a line.
TEST_F(TelemetryTest, LogFieldsAndNoSecrets) {
  const std::string key(64, 'a');
  const std::string opts = "{\"durability\":\"normal\",\"encryption_key\":\"" + key + "\"}";
  LogCapture logs;
  ASSERT_EQ(WF_OK, wf_set_default_logger(WF_LOG_DEBUG, LogCapture::fn, &logs));
  open(opts.c_str());
  ASSERT_EQ(WF_OK, wf_set_default_logger(WF_LOG_INFO, nullptr, nullptr));
  Sink sink;
  sink.handler = Handlers::handle;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", "{\"max_attempts\":3}", Sink::cb, &sink));
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  enqueue({{"effect", "x"},
           {"tenant", "t1"},
           {"key", "k1"},
           {"payload", "flaky"},
           {"traceparent", tp},
           {"metadata", {{"correlation_id", "c-9"}, {"note", "PAYLOAD-SECRET-1"}}}});
  enqueue({{"effect", "x"}, {"tenant", "t1"}, {"payload", {{"card", "PAYLOAD-SECRET-2"}}}});
  enqueue({{"effect", "x"}, {"payload", "fail"}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait_count(4));
  sync();
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_DEBUG, LogCapture::fn, &logs));  // flushes
  std::map<std::string, std::vector<json>> by_event;
  for (auto &l : logs.snapshot()) {
    EXPECT_EQ(std::string::npos, l.find("PAYLOAD-SECRET")) << l;
    EXPECT_EQ(std::string::npos, l.find(key)) << l;
    json j = json::parse(l);
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg") &&
                j.contains("boot_id"))
        << l;
    if (j.contains("event")) by_event[j["event"]].push_back(j);
  }
  ASSERT_EQ(1u, by_event["engine.opened"].size());
  EXPECT_EQ(1u, by_event["engine.started"].size());
  // Dispatches of the traced job carry its ids and trace id.
  int traced = 0;
  for (auto &j : by_event["job.dispatched"]) {
    EXPECT_EQ("debug", j["level"]);
    EXPECT_TRUE(j.contains("job_id") && j.contains("effect") && j.contains("tenant") &&
                j.contains("attempt"));
    if (j.value("key", "") == "k1") {
      ++traced;
      EXPECT_EQ("t1", j["tenant"]);
      EXPECT_EQ("x", j["effect"]);
      EXPECT_EQ("c-9", j["correlation_id"]);
      EXPECT_EQ("4bf92f3577b34da6a3ce929d0e0e4736", j["trace_id"]);
    }
  }
  EXPECT_EQ(2, traced);  // attempt 1 and its retry
  EXPECT_EQ(4u, by_event["job.dispatched"].size());
  EXPECT_EQ(2u, by_event["job.completed"].size());
  ASSERT_EQ(1u, by_event["job.retry_scheduled"].size());
  json r = by_event["job.retry_scheduled"][0];
  EXPECT_EQ("info", r["level"]);
  EXPECT_EQ("k1", r["key"]);
  EXPECT_EQ("try again", r["error"]);
  EXPECT_EQ("4bf92f3577b34da6a3ce929d0e0e4736", r["trace_id"]);
  ASSERT_EQ(1u, by_event["job.dead"].size());
  EXPECT_EQ("warn", by_event["job.dead"][0]["level"]);
  EXPECT_EQ("permanent", by_event["job.dead"][0]["error"]);

  // Above debug, no debug event is delivered.
  LogCapture info;
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_INFO, LogCapture::fn, &info));
  enqueue({{"effect", "x"}, {"payload", "ok"}});
  ASSERT_TRUE(sink.wait_count(5));
  sync();
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_INFO, nullptr, nullptr));
  for (auto &l : info.snapshot()) EXPECT_NE("debug", json::parse(l)["level"]) << l;
}

// ----------------------------------------------------------------- tracing

const char *kTp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// order.placed -> charge; charge.completed -> ship (with a schedule firing
// an audit job), done.
int order_reducer(void *, const char *in, size_t len, wf_buf *out) {
  json i = json::parse(std::string(in, len));
  std::string type = i["event"]["type"];
  json o{{"state", type}};
  if (type == "order.placed")
    o["commands"] = json::array({json{{"effect", "charge"}, {"payload", 1}}});
  if (type == "charge.completed") {
    o["commands"] = json::array({json{{"effect", "ship"}}});
    o["schedules"] =
        json::array({json{{"key", "audit"}, {"delay_ms", 0}, {"job", {{"effect", "audit"}}}}});
    o["done"] = true;
  }
  std::string s = o.dump();
  return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
}

TEST_F(TelemetryTest, TraceparentThroughASagaIntoProviders) {
  open();
  Sink sink;
  sink.handler = [](wf_job *j) {
    // charge fails once: each attempt gets its own span id.
    if (std::string(wf_job_effect(j)) == "charge" && wf_job_attempt(j) == 1)
      EXPECT_EQ(WF_OK, wf_job_retry(j, "busy", 0));
    else
      EXPECT_EQ(WF_OK, wf_job_complete(j, "{\"ok\":true}"));
  };
  for (const char *eff : {"charge", "ship", "audit"})
    ASSERT_EQ(WF_OK, wf_effect_register(e, eff, nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK,
            wf_saga_register(e, "order", "{\"start\":[\"order.placed\"]}", order_reducer, nullptr));
  ASSERT_EQ(WF_OK, wf_start(e));
  json ev{{"event_id", "e1"},
          {"type", "order.placed"},
          {"correlation_id", "o1"},
          {"traceparent", kTp},
          {"tracestate", "vendor=v1"}};
  ASSERT_EQ(WF_OK, wf_submit(e, ev.dump().c_str())) << wf_last_error();
  ASSERT_TRUE(sink.wait_count(4));  // charge x2, ship, audit
  std::set<std::string> spans;
  std::map<std::string, int> seen;
  for (auto &rec : sink.seen) {
    const json &m = rec["metadata"];
    std::string eff = rec["effect"];
    seen[eff]++;
    ASSERT_TRUE(m.contains("traceparent")) << eff << " " << m.dump();
    std::string tp = m["traceparent"];
    EXPECT_EQ(55u, tp.size());
    EXPECT_EQ(0u, tp.find("00-0af7651916cd43dd8448eb211c80319c-")) << eff << " " << tp;
    EXPECT_EQ("-01", tp.substr(52));
    std::string span = tp.substr(36, 16);
    EXPECT_NE("b7ad6b7169203331", span);
    EXPECT_TRUE(spans.insert(span).second) << "span reused: " << span;
    EXPECT_EQ("b7ad6b7169203331", m["parent_span_id"]) << eff;
    EXPECT_EQ("vendor=v1", m["tracestate"]) << eff;
  }
  EXPECT_EQ(2, seen["charge"]);
  EXPECT_EQ(1, seen["ship"]);
  EXPECT_EQ(1, seen["audit"]);
}

TEST_F(TelemetryTest, TraceContextIsCheckedAtTheBoundary) {
  open();
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  for (const char *bad : {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                          "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                          "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                          "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                          "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", "x"}) {
    json ev{{"event_id", "e"}, {"type", "t"}, {"traceparent", bad}};
    EXPECT_EQ(WF_EINVAL, wf_submit(e, ev.dump().c_str())) << bad;
    EXPECT_NE(std::string(wf_last_error()).find("traceparent"), std::string::npos);
    enqueue({{"effect", "x"}, {"traceparent", bad}}, WF_EINVAL);
    enqueue({{"effect", "x"}, {"metadata", {{"traceparent", bad}}}}, WF_EINVAL);
  }
  enqueue({{"effect", "x"}, {"traceparent", 7}}, WF_EINVAL);
  enqueue({{"effect", "x"}, {"traceparent", kTp}, {"tracestate", "a=\x01"}}, WF_EINVAL);
  // A later version may carry more fields.
  enqueue({{"effect", "x"},
           {"traceparent", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later"}});
  enqueue({{"effect", "x"}, {"metadata", {{"traceparent", kTp}}}});
  enqueue({{"effect", "x"}});
  EXPECT_EQ(3, pending());  // nothing of the refused ones was written
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait_count(3));
  int traced = 0;
  for (auto &rec : sink.seen) {
    const json &m = rec["metadata"];
    if (!m.contains("traceparent")) {
      EXPECT_FALSE(m.contains("parent_span_id"));
      continue;
    }
    ++traced;
    EXPECT_EQ(0u, m["traceparent"].get<std::string>().find("00-0af7651916cd43dd8448eb211c80319c-"));
    EXPECT_EQ("b7ad6b7169203331", m["parent_span_id"]);
  }
  EXPECT_EQ(2, traced);
}

}  // namespace
