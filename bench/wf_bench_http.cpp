// wf_bench_http: webhooks/s through the built-in HTTP provider to a local
// keep-alive sink at 100 and 1,000 concurrent requests, and the loop's
// dispatch latency for another effect meanwhile; compared in the same run
// with libcurl's multi interface alone (same sink, same requests, no engine).
// The sink is in this process (its own thread and libuv loop, minimal
// HTTP/1.1), on 127.0.0.1 only. Prints numbers; see docs/performance.md.
//
//   wf_bench_http [jobs-per-run=20000] [dir=/tmp]
#include <curl/curl.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "wfengine.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ------------------------------------------------------------------ the sink

struct Conn {
  uv_tcp_t tcp;
  std::string buf;
};

std::atomic<long> g_sink_requests{0};
const char kResp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

void on_alloc(uv_handle_t *, size_t sz, uv_buf_t *b) {
  b->base = static_cast<char *>(std::malloc(sz));
  b->len = sz;
}

void on_close(uv_handle_t *h) { delete static_cast<Conn *>(h->data); }

// Answers every complete request in c->buf.
void drain_requests(Conn *c) {
  while (true) {
    size_t end = c->buf.find("\r\n\r\n");
    if (end == std::string::npos) return;
    size_t len = 0;
    for (size_t i = 0; i < end;) {
      size_t nl = c->buf.find("\r\n", i);
      if (nl == std::string::npos || nl > end) nl = end;
      if (nl - i > 15 && strncasecmp(c->buf.data() + i, "content-length:", 15) == 0)
        len = std::strtoul(c->buf.c_str() + i + 15, nullptr, 10);
      i = nl + 2;
    }
    if (c->buf.size() < end + 4 + len) return;
    c->buf.erase(0, end + 4 + len);
    g_sink_requests++;
    auto *w = new uv_write_t;
    uv_buf_t b = uv_buf_init(const_cast<char *>(kResp), sizeof kResp - 1);
    uv_write(w, reinterpret_cast<uv_stream_t *>(&c->tcp), &b, 1,
             [](uv_write_t *req, int) { delete req; });
  }
}

void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  auto *c = static_cast<Conn *>(s->data);
  if (n > 0) {
    c->buf.append(b->base, static_cast<size_t>(n));
    drain_requests(c);
  } else if (n < 0) {
    uv_close(reinterpret_cast<uv_handle_t *>(s), on_close);
  }
  std::free(b->base);
}

void on_conn(uv_stream_t *server, int status) {
  if (status < 0) return;
  auto *c = new Conn;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t *>(&c->tcp)) == 0)
    uv_read_start(reinterpret_cast<uv_stream_t *>(&c->tcp), on_alloc, on_read);
  else
    uv_close(reinterpret_cast<uv_handle_t *>(&c->tcp), on_close);
}

struct Sink {
  uv_loop_t loop;
  uv_tcp_t server;
  uv_async_t stop;
  std::thread th;
  int port = 0;
  Sink() {
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &server);
    sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&server, reinterpret_cast<sockaddr *>(&a), 0);
    if (uv_listen(reinterpret_cast<uv_stream_t *>(&server), 4096, on_conn) != 0) std::abort();
    sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&server, reinterpret_cast<sockaddr *>(&got), &len);
    port = ntohs(got.sin_port);
    uv_async_init(&loop, &stop, [](uv_async_t *h) {
      uv_walk(
          h->loop,
          [](uv_handle_t *x, void *) {
            if (!uv_is_closing(x)) uv_close(x, x->type == UV_TCP && x->data ? on_close : nullptr);
          },
          nullptr);
    });
    server.data = nullptr;
    th = std::thread([this] { uv_run(&loop, UV_RUN_DEFAULT); });
  }
  ~Sink() {
    uv_async_send(&stop);
    th.join();
    uv_loop_close(&loop);
  }
};

// ------------------------------------------------- curl multi alone (baseline)

struct CurlAlone {
  uv_loop_t loop;
  uv_timer_t timer;
  CURLM *multi;
  std::string url, body;
  int total = 0, started = 0, done = 0;
  curl_slist *headers = nullptr;

  struct SockCtx {
    uv_poll_t poll;
    curl_socket_t fd;
    CurlAlone *self;
  };

  static size_t discard(char *, size_t s, size_t n, void *) { return s * n; }

  void add_one() {
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_multi_add_handle(multi, e);
    started++;
  }
  void check() {
    int pending;
    while (CURLMsg *m = curl_multi_info_read(multi, &pending)) {
      if (m->msg != CURLMSG_DONE) continue;
      CURL *e = m->easy_handle;
      curl_multi_remove_handle(multi, e);
      curl_easy_cleanup(e);
      done++;
      if (started < total) add_one();
    }
  }
  static void on_poll(uv_poll_t *h, int status, int events) {
    auto *s = static_cast<SockCtx *>(h->data);
    int f = status < 0 ? CURL_CSELECT_ERR : 0;
    if (events & UV_READABLE) f |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) f |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(s->self->multi, s->fd, f, &running);
    s->self->check();
  }
  static int on_socket(CURL *, curl_socket_t fd, int what, void *ud, void *sp) {
    auto *self = static_cast<CurlAlone *>(ud);
    auto *s = static_cast<SockCtx *>(sp);
    if (what == CURL_POLL_REMOVE) {
      if (s) {
        curl_multi_assign(self->multi, fd, nullptr);
        uv_close(reinterpret_cast<uv_handle_t *>(&s->poll),
                 [](uv_handle_t *h) { delete static_cast<SockCtx *>(h->data); });
      }
      return 0;
    }
    if (!s) {
      s = new SockCtx;
      s->fd = fd;
      s->self = self;
      uv_poll_init_socket(&self->loop, &s->poll, fd);
      s->poll.data = s;
      curl_multi_assign(self->multi, fd, s);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
  }
  static void on_uv_timer(uv_timer_t *t) {
    auto *self = static_cast<CurlAlone *>(t->data);
    int running;
    curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    self->check();
  }
  static int on_timer(CURLM *, long ms, void *ud) {
    auto *self = static_cast<CurlAlone *>(ud);
    if (ms < 0)
      uv_timer_stop(&self->timer);
    else
      uv_timer_start(&self->timer, on_uv_timer, static_cast<uint64_t>(ms), 0);
    return 0;
  }

  // Requests/s for `n` requests with `conc` in flight.
  double run(const std::string &u, int n, int conc) {
    url = u;
    body = R"({"type":"order.shipped","order":42,"note":"benchmark payload"})";
    headers = curl_slist_append(nullptr, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    uv_loop_init(&loop);
    uv_timer_init(&loop, &timer);
    timer.data = this;
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 2048L);
    total = n;
    auto t0 = Clock::now();
    for (int i = 0; i < conc && started < total; i++) add_one();
    while (done < total) uv_run(&loop, UV_RUN_ONCE);
    auto t1 = Clock::now();
    curl_multi_cleanup(multi);
    uv_close(reinterpret_cast<uv_handle_t *>(&timer), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    curl_slist_free_all(headers);
    return n / secs(t0, t1);
  }
};

// ---------------------------------------------------------- engine + provider

struct Probe {
  std::mutex mu;
  std::vector<double> lat_ms;
  static void cb(void *u, wf_job *j) {
    auto *p = static_cast<Probe *>(u);
    size_t len;
    const char *pl = wf_job_payload(j, &len);
    int64_t sent = json::parse(std::string(pl, len))["t"].get<int64_t>();
    int64_t now =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
            .count();
    wf_job_complete(j, nullptr);
    std::lock_guard<std::mutex> g(p->mu);
    p->lat_ms.push_back((now - sent) / 1000.0);
  }
};

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

void check(int rc, const char *what) {
  if (rc != WF_OK) {
    std::fprintf(stderr, "%s: %s: %s\n", what, wf_strerror(rc), wf_last_error());
    std::exit(1);
  }
}

int64_t completed(wf_engine *e, const char *effect) {
  char *out = nullptr;
  check(wf_stats(e, nullptr, &out), "wf_stats");
  json s = json::parse(out);
  wf_free(out);
  return s["engine"]["effects"].contains(effect)
             ? s["engine"]["effects"][effect]["completed"].get<int64_t>()
             : 0;
}

struct Lat {
  double p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};
Lat summarize(std::vector<double> v) {
  Lat l;
  l.n = v.size();
  if (v.empty()) return l;
  std::sort(v.begin(), v.end());
  l.p50 = v[v.size() / 2];
  l.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  l.max = v.back();
  return l;
}

// Webhooks/s through the engine; probe jobs every 5 ms meanwhile. With
// n == 0: probes only (idle baseline).
// With `noop`, "hook" is a host callback that completes at once instead of
// the HTTP provider: the engine's own ceiling for the same jobs.
void noop_cb(void *, wf_job *j) { wf_job_complete(j, nullptr); }

double run_engine(const std::string &dir, const std::string &url, int n, int conc, Lat &lat,
                  bool noop = false) {
  std::string path = dir + "/wf_bench_http.db";
  for (const char *sfx : {"", "-wal", "-shm", "-wfboots"}) std::remove((path + sfx).c_str());
  wf_engine *e = nullptr;
  check(wf_open(path.c_str(), R"({"durability":"normal","max_inflight":2000})", &e), "wf_open");
  json cfg = {{"type", "http"},
              {"url", url},
              {"allow_private_networks", true},
              {"secrets", {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
              {"concurrency", conc},
              {"timeout_ms", 60000}};
  if (noop)
    check(
        wf_effect_register(e, "hook", json{{"concurrency", conc}}.dump().c_str(), noop_cb, nullptr),
        "register noop");
  else
    check(wf_effect_register_builtin(e, "hook", cfg.dump().c_str()), "register_builtin");
  Probe probe;
  check(wf_effect_register(e, "probe", nullptr, Probe::cb, &probe), "register probe");
  // Enqueued before the start: the run measures delivery, not enqueueing.
  for (int i = 0; i < n; i += 1000) {
    json batch = json::array();
    for (int k = i; k < std::min(n, i + 1000); k++)
      batch.push_back(
          {{"effect", "hook"},
           {"key", "k" + std::to_string(k)},
           {"payload", {{"type", "order.shipped"}, {"order", k}, {"note", "benchmark payload"}}}});
    char *ids = nullptr;
    check(wf_enqueue_batch(e, batch.dump().c_str(), &ids), "enqueue_batch");
    wf_free(ids);
  }
  auto t0 = Clock::now();
  check(wf_start(e), "wf_start");
  int probes = 0;
  auto probe_until = n ? Clock::time_point::max() : t0 + std::chrono::seconds(2);
  while (true) {
    if (n && completed(e, "hook") >= n) break;
    if (!n && Clock::now() >= probe_until) break;
    json p = {{"effect", "probe"}, {"payload", {{"t", now_us()}}}};
    check(wf_enqueue_async(e, p.dump().c_str(), nullptr, nullptr), "probe");
    probes++;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto t1 = Clock::now();
  check(wf_sync(e), "wf_sync");
  while (completed(e, "probe") < probes) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  check(wf_close(e), "wf_close");
  for (const char *sfx : {"", "-wal", "-shm", "-wfboots"}) std::remove((path + sfx).c_str());
  lat = summarize(probe.lat_ms);
  return n ? n / secs(t0, t1) : 0;
}

}  // namespace

int main(int argc, char **argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  std::string dir = argc > 2 ? argv[2] : "/tmp";
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Sink sink;
  std::string url = "http://127.0.0.1:" + std::to_string(sink.port) + "/hook";
  std::printf("wf_bench_http: %d webhooks per run to a keep-alive sink on 127.0.0.1:%d\n", n,
              sink.port);
  Lat idle;
  run_engine(dir, url, 0, 1, idle);
  std::printf("probe dispatch latency, idle engine: p50 %.2f ms  p99 %.2f ms  max %.2f ms (%zu)\n",
              idle.p50, idle.p99, idle.max, idle.n);
  for (int conc : {100, 1000}) {
    CurlAlone alone;
    double base = alone.run(url, n, conc);
    Lat lat, nlat;
    double eng = run_engine(dir, url, n, conc, lat);
    double noop = run_engine(dir, url, n, conc, nlat, true);
    std::printf(
        "concurrency %4d: curl multi alone %8.0f req/s | engine + http provider %8.0f webhooks/s "
        "(%.2fx curl) | engine + no-op host effect %8.0f jobs/s\n",
        conc, base, eng, eng / base, noop);
    std::printf(
        "                  probe dispatch latency with the provider p50 %.2f ms  p99 %.2f ms  max "
        "%.2f ms (%zu) | with the no-op effect p50 %.2f ms  p99 %.2f ms\n",
        lat.p50, lat.p99, lat.max, lat.n, nlat.p50, nlat.p99);
  }
  std::printf("sink answered %ld requests\n", g_sink_requests.load());
  curl_global_cleanup();
  return 0;
}
