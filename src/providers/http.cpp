// HTTP webhooks ({"type":"http", ...}): libcurl's multi interface driven by
// the engine's libuv loop. curl tells us which sockets to watch
// (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per socket) and when to call it
// back (CURLMOPT_TIMERFUNCTION -> one uv_timer_t); every transfer is an easy
// handle in the one multi handle, so thousands are in flight on the loop
// thread without blocking it and without a thread per request (name lookups
// use curl's resolver; IP literals need none). Connections are kept alive in
// the multi handle's cache. See docs/providers.md.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <strings.h>
#include <uv.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

#include "providers/http_util.h"
#include "providers/provider.h"
#include "util.h"

namespace wf::prov {

namespace {

using namespace wf::prov::http;

class HttpProvider;

// One attempt in flight.
struct Request {
  HttpProvider *p = nullptr;
  wf_job *job = nullptr;
  CURL *easy = nullptr;
  curl_slist *headers = nullptr;
  std::string url;
  HeaderList resp_headers;
  std::string body;
  size_t body_total = 0;
  // SSRF guard: what opensocket saw.
  bool refused = false;
  bool permitted = false;
  std::string refused_addr;
  AddrClass refused_class = AddrClass::kPublic;
  char errbuf[CURL_ERROR_SIZE] = {0};
};

// One socket curl asked us to watch.
struct Sock {
  uv_poll_t poll;
  curl_socket_t fd;
  HttpProvider *p;
};

std::string addr_text(const sockaddr *sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in *>(sa)->sin_addr, buf, sizeof buf);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6 *>(sa)->sin6_addr, buf, sizeof buf);
  else
    return "address of family " + std::to_string(sa->sa_family);
  return buf;
}

class HttpProvider : public Provider {
 public:
  HttpProvider(Host &host, std::string effect, Config cfg)
      : host_(host), effect_(std::move(effect)), cfg_(std::move(cfg)) {
    signer_ = Signer(std::move(cfg_.secret_keys));
    cfg_.secret_keys.clear();
    keep_ = cfg_.result_headers;
    for (const char *h : {"retry-after", "location", "content-type"}) keep_.push_back(h);
  }
  ~HttpProvider() override {
    if (multi_) shutdown();  // the engine detaches first; this is a fallback
    for (CURL *e : pool_) curl_easy_cleanup(e);
  }

  void attach(uv_loop_s *loop) override {
    if (multi_) return;
    loop_ = loop;
    multi_ = curl_multi_init();
    if (!multi_) throw std::runtime_error("http: curl_multi_init failed");
    timer_ = new uv_timer_t;
    uv_timer_init(loop_, timer_);
    timer_->data = this;
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 2048L);
  }

  void detach() override { shutdown(); }

 private:
  void shutdown() {
    if (!multi_) return;
    // Attempts in flight are abandoned: the engine is closing (their handles'
    // link is cut, so the retry below only releases each handle) and gives
    // the leases back.
    for (Request *r : std::unordered_set<Request *>(live_)) {
      curl_multi_remove_handle(multi_, r->easy);
      wf_job *j = r->job;
      finish(r);
      wf_job_retry(j, "http: the engine stopped while the request was in flight", -1);
    }
    // Stop watching sockets before curl closes them.
    for (Sock *s : socks_) {
      curl_multi_assign(multi_, s->fd, nullptr);
      close_sock(s);
    }
    socks_.clear();
    curl_multi_cleanup(multi_);
    multi_ = nullptr;
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t *>(timer_),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    timer_ = nullptr;
    for (CURL *e : pool_) curl_easy_cleanup(e);
    pool_.clear();
    loop_ = nullptr;
  }

 public:
  void dispatch(wf_job *job) override {
    if (!multi_) {
      wf_job_retry(job, "http: provider not attached to the loop", -1);
      return;
    }
    auto r = std::make_unique<Request>();
    r->p = this;
    r->job = job;
    try {
      build_request(*r);
    } catch (const std::exception &ex) {
      if (r->headers) curl_slist_free_all(r->headers);
      if (r->easy) release_easy(r->easy);
      wf_job_fail(job, (std::string("http: ") + ex.what()).c_str());
      return;
    }
    CURLMcode mc = curl_multi_add_handle(multi_, r->easy);
    if (mc != CURLM_OK) {
      curl_slist_free_all(r->headers);
      release_easy(r->easy);
      wf_job_retry(job, (std::string("http: ") + curl_multi_strerror(mc)).c_str(), -1);
      return;
    }
    live_.insert(r.release());
  }

 private:
  // ------------------------------------------------------------ a request

  CURL *take_easy() {
    if (!pool_.empty()) {
      CURL *e = pool_.back();
      pool_.pop_back();
      curl_easy_reset(e);
      return e;
    }
    return curl_easy_init();
  }
  void release_easy(CURL *e) {
    if (pool_.size() < 256)
      pool_.push_back(e);
    else
      curl_easy_cleanup(e);
  }

  void add_header(Request &r, const std::string &line) {
    curl_slist *n = curl_slist_append(r.headers, line.c_str());
    if (!n) throw std::bad_alloc();
    r.headers = n;
  }

  void build_request(Request &r) {
    wf_job *j = r.job;
    size_t plen = 0;
    const char *payload = wf_job_payload(j, &plen);
    std::string id = wf_job_id(j);
    std::string key = wf_job_key(j);
    std::string tenant = wf_job_tenant(j);
    json parsed;
    if (cfg_.uses_payload) parsed = json::parse(std::string_view(payload, plen));
    r.url = expand_url(cfg_, id, tenant, key, cfg_.uses_payload ? &parsed : nullptr);

    // webhook-id: the job key (stable across retries and re-enqueues with
    // the same key), else the job id.
    std::string wid = !key.empty() && header_value_ok(key, 512) ? key : "job_" + id;
    bool has_body = cfg_.method == "POST" || cfg_.method == "PUT" || cfg_.method == "PATCH";
    std::string_view body = has_body ? std::string_view(payload, plen) : std::string_view();
    int64_t ts = static_cast<int64_t>(std::time(nullptr));

    for (const auto &[n, v] : cfg_.headers) add_header(r, n + ": " + v);
    if (has_body) {
      bool ct = false;
      for (const auto &kv : cfg_.headers)
        ct = ct || strcasecmp(kv.first.c_str(), "content-type") == 0;
      if (!ct) add_header(r, "Content-Type: application/json");
    }
    add_header(r, "webhook-id: " + wid);
    add_header(r, "webhook-timestamp: " + std::to_string(ts));
    if (!signer_.empty()) add_header(r, "webhook-signature: " + signer_.sign(wid, ts, body));
    add_header(r, "Idempotency-Key: " + wid);
    add_header(r, "Expect:");  // no 100-continue round trip
    const char *meta = wf_job_metadata(j);
    if (meta && std::strstr(meta, "trace")) {
      json m = json::parse(meta, nullptr, false);
      if (m.is_object())
        for (const char *h : {"traceparent", "tracestate"}) {
          auto it = m.find(h);
          if (it != m.end() && it->is_string() && header_value_ok(it->get<std::string>(), 1024))
            add_header(r, std::string(h) + ": " + it->get<std::string>());
        }
    }

    CURL *e = r.easy = take_easy();
    if (!e) throw std::runtime_error("curl_easy_init failed");
    curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, &r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r.errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");  // no proxies (the guard checks the peer)
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!cfg_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, cfg_.ca_file.c_str());
    if (cfg_.timeout_ms > 0) {
      // A little before the engine's attempt timeout (same value), so that the
      // request ends with its own error and its connection is closed then.
      int64_t t = cfg_.timeout_ms - std::min<int64_t>(1000, cfg_.timeout_ms / 10);
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(t, 1)));
    }
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg_.connect_timeout_ms));
    curl_easy_setopt(e, CURLOPT_USERAGENT, cfg_.user_agent.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r.headers);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &r);
    if (cfg_.method == "GET") {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
      if (has_body) {
        // The payload stays valid while the job handle is (until we complete it).
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
      }
      if (cfg_.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, cfg_.method.c_str());
    }
  }

  // Frees what the request holds (not the job handle).
  void finish(Request *r) {
    live_.erase(r);
    curl_slist_free_all(r->headers);
    release_easy(r->easy);
    delete r;
  }

  // The outcome of a finished transfer; the job is completed last.
  void done(Request *r, CURLcode res) {
    curl_multi_remove_handle(multi_, r->easy);
    wf_job *j = r->job;
    enum { kOk, kRetry, kFail } kind = kRetry;
    std::string err, result;
    int64_t delay = -1;
    try {
      if (res != CURLE_OK) {
        if (r->refused && !r->permitted) {
          kind = kFail;
          err = "http: connection to " + r->refused_addr + " refused by the SSRF guard (" +
                addr_class_name(r->refused_class) +
                " address; set \"allow_private_networks\" to allow it)";
          host_.log(WF_LOG_WARN, "http: SSRF guard refused a connection",
                    json{{"effect", effect_},
                         {"job", wf_job_id(j)},
                         {"address", r->refused_addr},
                         {"class", addr_class_name(r->refused_class)}});
        } else {
          kind = res == CURLE_URL_MALFORMAT || res == CURLE_UNSUPPORTED_PROTOCOL ? kFail : kRetry;
          std::string detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
          err = res == CURLE_OPERATION_TIMEDOUT ? "http: timed out (" + detail + ")"
                                                : "http: " + detail;
        }
      } else {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        Verdict v = classify_status(status);
        bool truncated = r->body_total > r->body.size();
        if (v == Verdict::kComplete) {
          kind = kOk;
          result =
              make_result(status, r->resp_headers, cfg_.result_headers, r->body, truncated).dump();
        } else {
          std::string snippet = sanitize_utf8(r->body, 200);
          err = "http: status " + std::to_string(status);
          if (v == Verdict::kRetry) {
            kind = kRetry;
            if (const std::string *ra = find_header(r->resp_headers, "retry-after")) {
              delay = retry_after_ms(*ra, system_now_ms(), cfg_.max_retry_after_ms);
              if (delay >= 0) err += " (retry after " + std::to_string(delay) + " ms)";
            }
          } else {
            kind = kFail;
            if (status >= 300 && status < 400) {
              const std::string *loc = find_header(r->resp_headers, "location");
              err += " redirect" + (loc ? " to " + sanitize_utf8(*loc, 500) : std::string()) +
                     " refused (redirects are not followed)";
            } else {
              err += " (permanent)";
            }
          }
          if (!snippet.empty()) err += ": " + snippet;
        }
      }
    } catch (const std::exception &ex) {
      kind = kRetry;
      err = std::string("http: ") + ex.what();
    }
    finish(r);
    if (kind == kOk) {
      if (wf_job_complete(j, result.c_str()) == WF_EINVAL) {
        // The result broke an engine limit: keep the status only.
        wf_job_complete(j, json{{"status", 200}, {"body_dropped", true}}.dump().c_str());
      }
    } else if (kind == kRetry) {
      wf_job_retry(j, err.c_str(), delay);
    } else {
      wf_job_fail(j, err.c_str());
    }
  }

  void check_done() {
    int pending = 0;
    while (CURLMsg *m = curl_multi_info_read(multi_, &pending)) {
      if (m->msg != CURLMSG_DONE) continue;
      Request *r = nullptr;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char **>(&r));
      CURLcode res = m->data.result;
      if (r) done(r, res);
      if (!multi_) return;
    }
  }

  // --------------------------------------------------------- curl callbacks

  static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
    auto *r = static_cast<Request *>(ud);
    size_t len = size * n;
    size_t cap = r->p->cfg_.max_body_bytes;
    if (r->body.size() < cap) r->body.append(ptr, std::min(len, cap - r->body.size()));
    r->body_total += len;
    return len;
  }

  static size_t on_header(char *ptr, size_t size, size_t n, void *ud) {
    auto *r = static_cast<Request *>(ud);
    size_t len = size * n;
    std::string_view line(ptr, len);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.substr(0, 5) == "HTTP/") {
      r->body.clear();  // a new response (after a 1xx) starts
      r->body_total = 0;
    }
    collect_header(line, r->p->keep_, r->resp_headers);
    return len;
  }

  // Connect-time SSRF guard: the address curl is about to connect to, after
  // name resolution (so DNS rebinding cannot slip past it).
  static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, curl_sockaddr *a) {
    auto *r = static_cast<Request *>(ud);
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    AddrClass c = classify(&a->addr);
    if (!addr_allowed(c, r->p->cfg_.allow_private_networks)) {
      r->refused = true;
      r->refused_class = c;
      r->refused_addr = addr_text(&a->addr);
      return CURL_SOCKET_BAD;
    }
    r->permitted = true;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  }

  static int on_socket(CURL *, curl_socket_t s, int what, void *ud, void *sockp) {
    auto *p = static_cast<HttpProvider *>(ud);
    auto *sk = static_cast<Sock *>(sockp);
    if (what == CURL_POLL_REMOVE) {
      if (sk) {
        curl_multi_assign(p->multi_, s, nullptr);
        p->socks_.erase(sk);
        close_sock(sk);
      }
      return 0;
    }
    if (!sk) {
      sk = new Sock;
      sk->fd = s;
      sk->p = p;
      if (uv_poll_init_socket(p->loop_, &sk->poll, s) != 0) {
        delete sk;
        return -1;
      }
      sk->poll.data = sk;
      curl_multi_assign(p->multi_, s, sk);
      p->socks_.insert(sk);
    }
    int ev = 0;
    if (what & CURL_POLL_IN) ev |= UV_READABLE;
    if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
    uv_poll_start(&sk->poll, ev, on_poll);
    return 0;
  }

  static void close_sock(Sock *s) {
    uv_poll_stop(&s->poll);
    uv_close(reinterpret_cast<uv_handle_t *>(&s->poll),
             [](uv_handle_t *h) { delete static_cast<Sock *>(h->data); });
  }

  static void on_poll(uv_poll_t *h, int status, int events) {
    auto *sk = static_cast<Sock *>(h->data);
    HttpProvider *p = sk->p;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running = 0;
    curl_multi_socket_action(p->multi_, sk->fd, flags, &running);
    p->check_done();
  }

  static int on_timer(CURLM *, long timeout_ms, void *ud) {
    auto *p = static_cast<HttpProvider *>(ud);
    if (!p->timer_) return 0;
    if (timeout_ms < 0)
      uv_timer_stop(p->timer_);
    else
      uv_timer_start(p->timer_, on_uv_timer, static_cast<uint64_t>(timeout_ms), 0);
    return 0;
  }

  static void on_uv_timer(uv_timer_t *t) {
    auto *p = static_cast<HttpProvider *>(t->data);
    int running = 0;
    curl_multi_socket_action(p->multi_, CURL_SOCKET_TIMEOUT, 0, &running);
    p->check_done();
  }

  Host &host_;
  std::string effect_;
  Config cfg_;
  Signer signer_;
  std::vector<std::string> keep_;  // response headers collected
  uv_loop_t *loop_ = nullptr;
  CURLM *multi_ = nullptr;
  uv_timer_t *timer_ = nullptr;
  std::unordered_set<Request *> live_;
  std::unordered_set<Sock *> socks_;
  std::vector<CURL *> pool_;  // reset easy handles, reused
};

}  // namespace

std::unique_ptr<Provider> make_http(Host &host, const std::string &effect, const json &config) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  Config c = parse_config(config, system_secrets());
  if (!c.ca_file.empty()) {
    FILE *f = std::fopen(c.ca_file.c_str(), "rb");
    if (!f) fail(WF_EINVAL, "http config: \"ca_file\": cannot read \"" + c.ca_file + "\"");
    (void)std::fclose(f);
  }
  host.log(WF_LOG_INFO, "http provider registered",
           json{{"effect", effect},
                {"method", c.method},
                {"signed", !c.secret_keys.empty()},
                {"allow_private_networks", c.allow_private_networks}});
  return std::make_unique<HttpProvider>(host, effect, std::move(c));
}

}  // namespace wf::prov
