// The built-in HTTP webhook provider end to end, against a sink the test
// starts on 127.0.0.1 (scripts/webhook_sink.py: plain and TLS with a
// certificate made by openssl here). The sink checks signatures with Python's
// hmac and reports each request as a JSON line on a pipe; the tests wait on
// those lines or on engine state, never on sleeps. No traffic leaves
// 127.0.0.0/8.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "helpers.h"

using namespace wft;

namespace {

const char *kSecretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const char *kSecretB = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA==";

template <typename F>
bool eventually(F &&pred, int ms = 30000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// scripts/webhook_sink.py as a child process; its stdout lines are collected
// by a reader thread.
class SinkServer {
 public:
  explicit SinkServer(std::vector<std::string> args) {
    // argv is built before the fork: the child only calls async-signal-safe
    // functions until exec (a malloc there could hang on a lock another
    // thread held at the fork).
    std::vector<std::string> all = {"python3", WF_SINK_PY};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char *> argv;
    for (auto &a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) abort();
    pid_ = fork();
    if (pid_ < 0) abort();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      execvp("python3", argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    in_ = in[1];
    out_ = out[0];
    reader_ = std::thread([this] { read_loop(); });
    json ready = wait_for([](const json &l) { return l["ev"] == "ready"; });
    port_ = ready.value("port", 0);
  }
  ~SinkServer() {
    command("quit");
    close(in_);
    bool exited = false;
    for (int i = 0; i < 2000 && !exited; i++) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_)
        exited = true;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exited) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    reader_.join();
    close(out_);
  }
  int port() const { return port_; }
  std::string url(const std::string &path, bool tls = false) const {
    return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  void command(const std::string &c) {
    std::string l = c + "\n";
    if (write(in_, l.data(), l.size()) < 0) {
    }
  }
  // The first line (from the start) matching `pred`; null after a timeout.
  json wait_for(const std::function<bool(const json &)> &pred, int ms = 30000) {
    std::unique_lock<std::mutex> lk(mu_);
    json found;
    cv_.wait_for(lk, std::chrono::milliseconds(ms), [&] {
      for (const auto &l : lines_)
        if (pred(l)) {
          found = l;
          return true;
        }
      return eof_;
    });
    return found;
  }
  std::vector<json> requests(const std::string &path) {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<json> v;
    for (const auto &l : lines_)
      if (l["ev"] == "req" && l["path"] == path) v.push_back(l);
    return v;
  }
  json nth_request(const std::string &path, size_t n) {
    size_t seen = 0;
    return wait_for([&](const json &l) {
      if (l["ev"] != "req" || l["path"] != path) return false;
      return ++seen == n;
    });
  }

 private:
  void read_loop() {
    std::string buf;
    char tmp[65536];
    ssize_t n;
    while ((n = read(out_, tmp, sizeof tmp)) > 0) {
      buf.append(tmp, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        json l = json::parse(buf.substr(0, nl), nullptr, false);
        buf.erase(0, nl + 1);
        std::lock_guard<std::mutex> g(mu_);
        lines_.push_back(std::move(l));
        cv_.notify_all();
      }
    }
    std::lock_guard<std::mutex> g(mu_);
    eof_ = true;
    cv_.notify_all();
  }
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, port_ = 0;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<json> lines_;
  bool eof_ = false;
};

class HttpProviderTest : public EngineTest {
 protected:
  void reg(const char *effect, json cfg, int expect = WF_OK) {
    cfg["type"] = "http";
    int rc = wf_effect_register_builtin(e, effect, cfg.dump().c_str());
    ASSERT_EQ(expect, rc) << wf_last_error();
  }
  void start() { ASSERT_EQ(WF_OK, wf_start(e)) << wf_last_error(); }
  // Waits until the outbox is empty and returns the dead letters.
  json settle() {
    EXPECT_TRUE(eventually([&] { return pending() == 0; })) << stats().dump();
    return dead();
  }
};

TEST_F(HttpProviderTest, SignedDeliveryWithHeadersAndRotation) {
  // The sink knows only secret B; the endpoint signs with A and B (rotation).
  SinkServer s({"--secret", kSecretB});
  open();
  LogCapture logs;
  ASSERT_EQ(WF_OK, wf_set_logger(e, WF_LOG_DEBUG, LogCapture::fn, &logs));
  setenv("WF_TEST_WHSEC_B", kSecretB, 1);
  reg("hook", {{"url", s.url("/ok")},
               {"allow_private_networks", true},
               {"secrets", {kSecretA, "env:WF_TEST_WHSEC_B"}},
               {"headers", {{"X-Tenant-Token", "t1"}}},
               {"result_headers", {"x-request-id"}},
               {"max_attempts", 3}});
  start();
  enqueue({{"effect", "hook"},
           {"key", "order-1"},
           {"tenant", "acme"},
           {"payload", {{"amount", 12}, {"text", "h\xc3\xa9"}}},
           {"metadata",
            {{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
             {"tracestate", "wf=1"}}}});
  json r = s.nth_request("/ok", 1);
  ASSERT_FALSE(r.is_null());
  const json &h = r["headers"];
  EXPECT_EQ(true, r["sig_ok"]) << r.dump();
  EXPECT_EQ("POST", r["method"]);
  EXPECT_EQ("order-1", h["webhook-id"]);
  EXPECT_EQ("order-1", h["idempotency-key"]);
  EXPECT_EQ("application/json", h["content-type"]);
  EXPECT_EQ("t1", h["x-tenant-token"]);
  // The attempt's own span in the caller's trace (docs/tracing.md).
  std::string tp = h.value("traceparent", "");
  ASSERT_EQ(55u, tp.size()) << tp;
  EXPECT_EQ("00-4bf92f3577b34da6a3ce929d0e0e4736-", tp.substr(0, 36));
  EXPECT_NE("00f067aa0ba902b7", tp.substr(36, 16));
  EXPECT_EQ("-01", tp.substr(52));
  EXPECT_EQ("wf=1", h["tracestate"]);
  std::string sig = h["webhook-signature"];
  EXPECT_EQ(2, std::count(sig.begin(), sig.end(), ','));  // one v1 per secret
  EXPECT_EQ(json::parse(R"({"amount":12,"text":"hé"})"), json::parse(r["body"].get<std::string>()));
  int64_t ts = std::stoll(h["webhook-timestamp"].get<std::string>());
  EXPECT_LT(std::llabs(ts - time(nullptr)), 300);
  EXPECT_EQ(0u, settle().size());
  sync();
  // Secrets never reach the database or the logs.
  std::string secret_b64 = std::string(kSecretB).substr(6);
  std::string db = slurp(path) + slurp(path + "-wal");
  EXPECT_EQ(std::string::npos, db.find(secret_b64));
  EXPECT_EQ(std::string::npos, db.find(std::string(kSecretA).substr(6)));
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  for (const auto &l : logs.snapshot()) {
    EXPECT_EQ(std::string::npos, l.find(secret_b64)) << l;
    EXPECT_EQ(std::string::npos, l.find(std::string(kSecretA).substr(6))) << l;
  }
}

TEST_F(HttpProviderTest, UnsignedWithoutKeyUsesJobId) {
  SinkServer s({});
  open();
  reg("hook", {{"url", s.url("/ok")}, {"allow_private_networks", true}, {"method", "PUT"}});
  start();
  std::string id = enqueue({{"effect", "hook"}, {"payload", {{"x", 1}}}});
  json r = s.nth_request("/ok", 1);
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ("PUT", r["method"]);
  EXPECT_EQ("job_" + id, r["headers"]["webhook-id"]);
  EXPECT_FALSE(r["headers"].contains("webhook-signature"));
  EXPECT_EQ(0u, settle().size());
}

TEST_F(HttpProviderTest, UrlTemplateFromJob) {
  SinkServer s({});
  open();
  reg("hook",
      {{"url", s.url("/status/{payload.code}?t={tenant}")}, {"allow_private_networks", true}});
  start();
  enqueue({{"effect", "hook"}, {"tenant", "a b"}, {"payload", {{"code", 204}}}});
  json r = s.nth_request("/status/204", 1);
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(0u, settle().size());
  // A payload without the field cannot be delivered: permanent.
  enqueue({{"effect", "hook"}, {"payload", {{"other", 1}}}});
  json d = settle();
  ASSERT_EQ(1u, d.size());
  EXPECT_NE(std::string::npos, d[0].dump().find("no field {payload.code}")) << d.dump();
}

TEST_F(HttpProviderTest, RetryAfterIsTheRetryDelay) {
  SinkServer s({});
  open();
  reg("hook", {{"url", s.url("/flaky?ra=120")},
               {"allow_private_networks", true},
               {"timeout_ms", 300000},
               {"max_attempts", 5}});
  start();
  enqueue({{"effect", "hook"}, {"key", "k-flaky"}});
  json first = s.nth_request("/flaky", 1);
  ASSERT_FALSE(first.is_null());
  // The 503 is recorded as a retry due in 120 s (engine clock): after 60 s
  // nothing runs yet.
  ASSERT_TRUE(eventually([&] {
    json st = stats();
    return st["outbox"]["scheduled"] == 1 && st["outbox"]["running"] == 0;
  })) << stats().dump();
  advance(60000);
  sync();
  json st = stats();
  EXPECT_EQ(1, st["outbox"]["scheduled"]) << st.dump();
  EXPECT_EQ(0, st["outbox"]["running"]) << st.dump();
  EXPECT_EQ(1u, s.requests("/flaky").size());
  advance(60001);
  json second = s.nth_request("/flaky", 2);
  ASSERT_FALSE(second.is_null());
  // Stable across retries.
  EXPECT_EQ(first["headers"]["webhook-id"], second["headers"]["webhook-id"]);
  EXPECT_EQ(first["headers"]["idempotency-key"], second["headers"]["idempotency-key"]);
  EXPECT_EQ(0u, settle().size());
}

TEST_F(HttpProviderTest, PermanentFailures) {
  SinkServer s({});
  open();
  reg("bad",
      {{"url", s.url("/status/400")}, {"allow_private_networks", true}, {"max_attempts", 5}});
  reg("redir",
      {{"url", s.url("/redirect")}, {"allow_private_networks", true}, {"max_attempts", 5}});
  start();
  enqueue({{"effect", "bad"}});
  enqueue({{"effect", "redir"}});
  json d = settle();
  ASSERT_EQ(2u, d.size()) << d.dump();
  std::string all = d.dump();
  EXPECT_NE(std::string::npos, all.find("status 400 (permanent): status body")) << all;
  EXPECT_NE(std::string::npos, all.find("status 302 redirect to /ok refused")) << all;
  EXPECT_EQ(1u, s.requests("/status/400").size());
  EXPECT_EQ(1u, s.requests("/redirect").size());
  EXPECT_EQ(0u, s.requests("/ok").size());  // the redirect was not followed
}

TEST_F(HttpProviderTest, TimeoutRetries) {
  SinkServer s({});
  open();
  reg("hook", {{"url", s.url("/hang")},
               {"allow_private_networks", true},
               {"timeout_ms", 300},
               {"max_attempts", 1}});
  start();
  enqueue({{"effect", "hook"}});
  json d = settle();
  ASSERT_EQ(1u, d.size());
  // The request's own timeout (a little before the engine's) normally ends it.
  EXPECT_NE(std::string::npos, d.dump().find("timed out")) << d.dump();
}

TEST_F(HttpProviderTest, ConnectionRefusedRetries) {
  int port;
  {
    SinkServer s({});
    port = s.port();
  }  // closed: nothing listens there now
  open();
  reg("hook", {{"url", "http://127.0.0.1:" + std::to_string(port) + "/ok"},
               {"allow_private_networks", true},
               {"max_attempts", 2},
               {"backoff", {{"base_ms", 1}, {"cap_ms", 1}, {"jitter", "none"}}}});
  start();
  enqueue({{"effect", "hook"}});
  ASSERT_TRUE(eventually([&] { return stats()["outbox"]["scheduled"] == 1; })) << stats().dump();
  advance(10);
  json d = settle();
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(2, d[0]["attempts"]) << d.dump();
}

TEST_F(HttpProviderTest, SsrfGuardRefusesLoopbackUnlessAllowed) {
  SinkServer s({});
  open();
  reg("guarded", {{"url", s.url("/ok")}, {"max_attempts", 5}});
  reg("named",
      {{"url", "http://localhost:" + std::to_string(s.port()) + "/ok"}, {"max_attempts", 5}});
  reg("allowed", {{"url", s.url("/ok")}, {"allow_private_networks", true}});
  start();
  enqueue({{"effect", "guarded"}});
  enqueue({{"effect", "named"}});
  json d = settle();
  ASSERT_EQ(2u, d.size()) << d.dump();
  for (const auto &x : d) {
    std::string err = x.dump();
    EXPECT_NE(std::string::npos, err.find("refused by the SSRF guard (loopback")) << err;
    EXPECT_EQ(1, x["attempts"]);  // permanent
  }
  EXPECT_EQ(0u, s.requests("/ok").size());
  enqueue({{"effect", "allowed"}});
  ASSERT_FALSE(s.nth_request("/ok", 1).is_null());
  EXPECT_EQ(2u, settle().size());
}

TEST_F(HttpProviderTest, TlsVerification) {
  std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout '" +
      key + "' -out '" + cert +
      "' -days 1 -subj /CN=localhost "
      "-addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1";
  ASSERT_EQ(0, system(cmd.c_str()));
  SinkServer s({"--tls", cert, key});
  open();
  reg("untrusted",
      {{"url", s.url("/ok", true)}, {"allow_private_networks", true}, {"max_attempts", 1}});
  reg("trusted",
      {{"url", s.url("/ok", true)}, {"allow_private_networks", true}, {"ca_file", cert}});
  // The certificate names 127.0.0.1 and localhost, not this host name.
  reg("wronghost", {{"url", "https://127.0.0.2:" + std::to_string(s.port()) + "/ok"},
                    {"allow_private_networks", true},
                    {"ca_file", cert},
                    {"max_attempts", 1}});
  start();
  enqueue({{"effect", "untrusted"}});
  json d = settle();
  ASSERT_EQ(1u, d.size());
  EXPECT_NE(std::string::npos, d[0].dump().find("certificate")) << d.dump();
  EXPECT_EQ(0u, s.requests("/ok").size());
  enqueue({{"effect", "trusted"}});
  ASSERT_FALSE(s.nth_request("/ok", 1).is_null());
  EXPECT_EQ(1u, settle().size());
  enqueue({{"effect", "wronghost"}});
  EXPECT_EQ(2u, settle().size());
  EXPECT_EQ(1u, s.requests("/ok").size());
}

TEST_F(HttpProviderTest, BadConfigurations) {
  open();
  int rc = wf_effect_register_builtin(
      e, "x", R"({"type":"http","url":"https://example.com/","colour":"blue"})");
  EXPECT_EQ(WF_EINVAL, rc);
  EXPECT_NE(nullptr, std::strstr(wf_last_error(), "\"colour\"")) << wf_last_error();
  rc = wf_effect_register_builtin(e, "x", R"({"type":"http","url":"gopher://example.com/"})");
  EXPECT_EQ(WF_EINVAL, rc);
  rc = wf_effect_register_builtin(e, "x",
                                  R"({"type":"http","url":"https://e.com/","max_attempts":0})");
  EXPECT_EQ(WF_EINVAL, rc);
  rc = wf_effect_register_builtin(
      e, "x", R"({"type":"http","url":"https://e.com/","ca_file":"/nonexistent/ca.pem"})");
  EXPECT_EQ(WF_EINVAL, rc);
  EXPECT_NE(nullptr, std::strstr(wf_last_error(), "ca_file")) << wf_last_error();
  rc = wf_effect_register_builtin(
      e, "x", R"({"type":"http","url":"https://e.com/","secrets":["env:WF_TEST_UNSET_VAR"]})");
  EXPECT_EQ(WF_EINVAL, rc);
  EXPECT_NE(nullptr, std::strstr(wf_last_error(), "WF_TEST_UNSET_VAR")) << wf_last_error();
  // Nothing was registered by the failures.
  EXPECT_EQ(WF_OK, wf_effect_register_builtin(e, "x", R"({"type":"http","url":"https://e.com/"})"))
      << wf_last_error();
}

// Closing the engine with requests in flight: every easy handle and uv
// handle goes away (ASan checks), the jobs go back to the queue.
TEST_F(HttpProviderTest, CloseWithRequestsInFlight) {
  SinkServer s({});
  open("{\"durability\":\"normal\",\"drain_timeout_ms\":50}");
  reg("hook", {{"url", s.url("/hang")}, {"allow_private_networks", true}, {"timeout_ms", 600000}});
  start();
  for (int i = 0; i < 5; i++) enqueue({{"effect", "hook"}});
  ASSERT_FALSE(s.nth_request("/hang", 5).is_null());
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  open();
  EXPECT_EQ(5, pending());
  EXPECT_EQ(0u, dead().size());
}

// 1,000 requests held open by the sink while the loop still dispatches
// another effect; then all of them complete.
TEST_F(HttpProviderTest, ThousandConcurrentWhileLoopDispatches) {
  const int n = kSanitizer ? 200 : 1000;
  SinkServer s({"--quiet"});
  open("{\"durability\":\"normal\",\"max_inflight\":1100}", false);
  reg("slow", {{"url", s.url("/hold")}, {"allow_private_networks", true}, {"timeout_ms", 600000}});
  Sink other;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "other", nullptr, Sink::cb, &other));
  start();
  json jobs = json::array();
  for (int i = 0; i < n; i++)
    jobs.push_back({{"effect", "slow"}, {"key", "s" + std::to_string(i)}});
  char *ids = nullptr;
  ASSERT_EQ(WF_OK, wf_enqueue_batch(e, jobs.dump().c_str(), &ids)) << wf_last_error();
  wf_free(ids);
  ASSERT_FALSE(s.wait_for([&](const json &l) { return l["ev"] == "held" && l["n"] == n; }, 120000)
                   .is_null());
  // All n are in flight on the loop; another effect is still dispatched.
  enqueue({{"effect", "other"}});
  ASSERT_TRUE(other.wait_count(1, 30000));
  // (The other job's own outcome may still be on its way to the writer.)
  json st = stats();
  EXPECT_EQ(n, st["engine"]["effects"]["slow"]["inflight"].get<int>()) << st.dump();
  EXPECT_EQ(0, st["engine"]["effects"]["slow"]["completed"].get<int>()) << st.dump();
  EXPECT_TRUE(s.wait_for([](const json &l) { return l["ev"] == "released"; }, 0).is_null());
  s.command("release");
  ASSERT_TRUE(eventually([&] { return pending() == 0; }, 120000)) << stats().dump();
  EXPECT_EQ(0u, dead().size());
}

}  // namespace
