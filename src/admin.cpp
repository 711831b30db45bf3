// admin: the HTTP endpoint of option admin_listen (admin.h), on the engine's
// libuv loop. The socket is bound at wf_open (so a bad address or a port in
// use fails the open) and served from the loop's start until it stops.
// One request per connection (GET only, answered with Connection: close);
// requests are bounded in size, connections in number and in time.
// /metrics is computed on libuv's thread pool (it reads the database), the
// health check's write goes through the writer; the loop never waits on disk.
#include "admin.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "engine.h"
#include "outbox.h"

namespace wf {

namespace admin {

void parse_listen(const std::string &spec, bool allow_remote, sockaddr_storage *out,
                  socklen_t *len) {
  auto bad = [&](const std::string &why) { fail(WF_EINVAL, "options: \"admin_listen\" " + why); };
  size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon + 1 >= spec.size())
    bad("must be \"host:port\", e.g. \"127.0.0.1:9464\" (port 0: any free port)");
  std::string host = spec.substr(0, colon), port = spec.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    bad("has a bad port \"" + port + "\"");
  int p = std::stoi(port);
  if (p > 65535) bad("port must be 0 to 65535");
  std::memset(out, 0, sizeof *out);
  bool loopback = false;
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto *a = reinterpret_cast<sockaddr_in6 *>(out);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(p));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a->sin6_addr) != 1)
      bad("has a bad IPv6 address \"" + host + "\"");
    loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    *len = sizeof(sockaddr_in6);
  } else {
    auto *a = reinterpret_cast<sockaddr_in *>(out);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(p));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1)
      bad("has a bad host \"" + host + "\" (an IPv4 address, [IPv6 address] or localhost)");
    loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    *len = sizeof(sockaddr_in);
  }
  if (!loopback && !allow_remote)
    bad("\"" + spec +
        "\" is not a loopback address: the admin endpoint listens on 127.0.0.0/8 or [::1] "
        "unless admin_allow_remote is true");
}

RequestParser::RequestParser(size_t max_bytes)
    : parser_(std::make_unique<http_parser>()),
      settings_(std::make_unique<http_parser_settings>()),
      max_(max_bytes) {
  http_parser_init(parser_.get(), HTTP_REQUEST);
  parser_->data = this;
  http_parser_settings_init(settings_.get());
  settings_->on_url = on_url;
  settings_->on_headers_complete = on_headers_complete;
  settings_->on_message_complete = on_message_complete;
}

RequestParser::~RequestParser() = default;

int RequestParser::on_url(http_parser *p, const char *at, size_t n) {
  static_cast<RequestParser *>(p->data)->url_.append(at, n);
  return 0;
}

int RequestParser::on_headers_complete(http_parser *p) {
  auto *self = static_cast<RequestParser *>(p->data);
  if (p->method != HTTP_GET) {
    self->result_ = 405;
    return -1;  // stop: nothing else of this request matters
  }
  return 0;
}

int RequestParser::on_message_complete(http_parser *p) {
  auto *self = static_cast<RequestParser *>(p->data);
  if (self->url_.empty() || self->url_[0] != '/') {
    self->result_ = 400;  // origin-form only ("/metrics")
    return -1;
  }
  self->path_ = self->url_.substr(0, self->url_.find_first_of("?#"));
  self->complete_ = true;
  self->result_ = 200;
  return -1;  // one request per connection: ignore what follows
}

int RequestParser::feed(const char *data, size_t n) {
  if (result_) return result_;
  bool over = false;
  if (n > max_ - seen_) {
    n = max_ - seen_;
    over = true;
  }
  seen_ += n;
  size_t done = n ? http_parser_execute(parser_.get(), settings_.get(), data, n) : 0;
  if (result_) return result_;
  if (HTTP_PARSER_ERRNO(parser_.get()) != HPE_OK || done != n) return result_ = 400;
  if (over) return result_ = 413;
  return 0;
}

Route route(const std::string &path) {
  if (path == "/metrics") return Route::kMetrics;
  if (path == "/health") return Route::kHealth;
  if (path == "/ready") return Route::kReady;
  if (path == "/info") return Route::kInfo;
  return Route::kNotFound;
}

std::string response(int status, const char *content_type, const std::string &body) {
  const char *reason = status == 200   ? "OK"
                       : status == 400 ? "Bad Request"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                       : status == 413 ? "Content Too Large"
                       : status == 500 ? "Internal Server Error"
                       : status == 503 ? "Service Unavailable"
                                       : "Error";
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                  "\r\nContent-Type: " + content_type +
                  "\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\nCache-Control: no-store\r\nConnection: close\r\n";
  if (status == 405) r += "Allow: GET\r\n";
  r += "\r\n";
  r += body;
  return r;
}

std::string error_response(int status) {
  const char *msg = status == 400   ? "malformed request"
                    : status == 404 ? "not found: /metrics, /health, /ready, /info"
                    : status == 405 ? "only GET is served"
                    : status == 413 ? "request over 8192 bytes"
                    : status == 503 ? "too many connections"
                                    : "error";
  return response(status, "application/json", json{{"error", msg}}.dump() + "\n");
}

}  // namespace admin

namespace {
struct AdminConn;
// strerror_r (GNU form): std::strerror is not thread safe.
std::string errno_text(int err) {
  char buf[128];
  return strerror_r(err, buf, sizeof buf);
}
}  // namespace

struct AdminServer {
  Engine *e = nullptr;
  int fd = -1;  // bound, listening; owned by `listener` once attached
  int port = 0;
  uv_tcp_t listener{};
  uv_async_t async{};
  bool attached = false;  // loop thread
  bool stopping = false;  // loop thread
  uint64_t next_id = 1;
  std::map<uint64_t, AdminConn *> conns;  // loop thread
  std::mutex mu;
  bool async_alive = false;                               // GUARDED_BY(mu)
  std::vector<std::pair<uint64_t, std::string>> answers;  // GUARDED_BY(mu)
  ~AdminServer() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

struct AdminConn {
  uint64_t id = 0;
  AdminServer *srv = nullptr;
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  admin::RequestParser parser;
  char buf[4096];
  std::string out;
  uv_write_t wr{};
  uv_shutdown_t sd{};
  bool peer_eof = false;     // the client shut down its side
  bool shut = false;         // the response is written and our side shut down
  bool answered = false;     // a response is written or being computed
  bool health_wait = false;  // the timer answers 503 for a pending health check
  bool closing = false;
  int open_handles = 2;
};

constexpr int64_t kHealthTimeoutMs = 2000;
const char *kJson = "application/json";

void on_conn_closed(uv_handle_t *h) {
  auto *c = static_cast<AdminConn *>(h->data);
  if (--c->open_handles == 0) delete c;
}

void close_conn(AdminConn *c) {
  if (c->closing) return;
  c->closing = true;
  c->srv->conns.erase(c->id);
  uv_timer_stop(&c->timer);
  uv_close(reinterpret_cast<uv_handle_t *>(&c->tcp), on_conn_closed);
  uv_close(reinterpret_cast<uv_handle_t *>(&c->timer), on_conn_closed);
}

// After the response: our side is shut down (FIN) and what the client still
// sends is read and dropped until it closes or a short linger ends, so that
// closing never resets the connection under an unread response.
constexpr uint64_t kLingerMs = 1000;

void on_shutdown(uv_shutdown_t *r, int status) {
  auto *c = static_cast<AdminConn *>(r->data);
  c->shut = true;
  if (status < 0 || c->peer_eof || c->closing) {
    close_conn(c);
    return;
  }
  uv_timer_start(
      &c->timer, [](uv_timer_t *t) { close_conn(static_cast<AdminConn *>(t->data)); }, kLingerMs,
      0);
}

void on_written(uv_write_t *w, int status) {
  auto *c = static_cast<AdminConn *>(w->data);
  if (status < 0 || c->closing) {
    close_conn(c);
    return;
  }
  c->sd.data = c;
  if (uv_shutdown(&c->sd, reinterpret_cast<uv_stream_t *>(&c->tcp), on_shutdown) != 0)
    close_conn(c);
}

void send(AdminConn *c, std::string text) {
  if (c->closing || !c->out.empty()) return;
  c->answered = true;
  c->health_wait = false;
  c->out = std::move(text);
  uv_buf_t b = uv_buf_init(c->out.data(), static_cast<unsigned>(c->out.size()));
  c->wr.data = c;
  if (uv_write(&c->wr, reinterpret_cast<uv_stream_t *>(&c->tcp), &b, 1, on_written) != 0)
    close_conn(c);
}

void send_to(AdminServer *s, uint64_t id, std::string text) {
  auto it = s->conns.find(id);
  if (it != s->conns.end()) send(it->second, std::move(text));
}

json options_info(const Options &o, bool encrypted) {
  // Every option but the secret: encryption_key is reported as a boolean.
  return json{{"durability", o.durability_full ? "full" : "normal"},
              {"busy_timeout_ms", o.busy_timeout_ms},
              {"lease_ms", o.lease_ms},
              {"max_attempts", o.max_attempts},
              {"dedupe_window_ms", o.dedupe_window_ms},
              {"max_payload_bytes", o.limits.max_payload_bytes},
              {"max_json_depth", o.limits.max_depth},
              {"max_inflight", o.max_inflight},
              {"poll_ms", o.poll_ms},
              {"drain_timeout_ms", o.drain_timeout_ms},
              {"group_commit_wait_us", o.group_commit_wait_us},
              {"checkpoint_pages", o.checkpoint_pages},
              {"claim_on_insert", o.claim_on_insert},
              {"tx_timeout_ms", o.tx_timeout_ms},
              {"max_interruptions", o.max_interruptions},
              {"abandon_after_ms", o.abandon_after_ms},
              {"vfs", o.vfs},
              {"encrypted", encrypted},
              {"retain_events_ms", o.retain_events_ms},
              {"retain_sagas_ms", o.retain_sagas_ms},
              {"retain_dead_ms", o.retain_dead_ms},
              {"retain_attempts_ms", o.retain_attempts_ms},
              {"purge_interval_ms", o.purge_interval_ms},
              {"async_queue_max", o.async_queue_max},
              {"async_queue_bytes", o.async_queue_bytes},
              {"metrics_by_tenant", o.metrics_by_tenant},
              {"admin_listen", o.admin_listen},
              {"admin_allow_remote", o.admin_allow_remote},
              {"admin_max_connections", o.admin_max_connections},
              {"admin_idle_timeout_ms", o.admin_idle_timeout_ms}};
}

std::string info(Engine &e) {
  json effects = json::array(), sagas = json::array();
  {
    std::shared_lock<std::shared_mutex> g(e.reg_mu);
    for (auto &[name, eff] : e.effects)
      effects.push_back(json{{"name", name},
                             {"builtin", eff->builtin != nullptr},
                             {"timeout_ms", eff->policy.timeout_ms},
                             {"concurrency", eff->policy.concurrency},
                             {"circuit", eff->policy.circuit.enabled}});
    for (auto &[name, d] : e.sagas) sagas.push_back(name);
  }
  json out{{"version", wf_version()},
           {"boot_id", e.boot_id},
           {"path", e.path},
           {"started", e.started.load()},
           {"draining", e.draining.load()},
           {"options", options_info(e.opt, e.cipher != nullptr)},
           {"effects", std::move(effects)},
           {"sagas", std::move(sagas)}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

struct MetricsWork {
  uv_work_t req{};
  AdminServer *srv;
  uint64_t id;
  std::string out;
};

void serve(AdminConn *c, const std::string &path) {
  AdminServer *s = c->srv;
  Engine &e = *s->e;
  c->answered = true;
  switch (admin::route(path)) {
    case admin::Route::kReady: {
      const char *why = s->stopping  ? "stopping"
                        : e.closed   ? "closed"
                        : e.draining ? "draining"
                        : !e.started ? "not started"
                                     : nullptr;
      send(c, admin::response(
                  why ? 503 : 200, kJson,
                  (why ? json{{"ready", false}, {"reason", why}} : json{{"ready", true}}).dump() +
                      "\n"));
      return;
    }
    case admin::Route::kInfo:
      send(c, admin::response(200, kJson, info(e)));
      return;
    case admin::Route::kMetrics: {
      auto *w = new MetricsWork{{}, s, c->id, {}};
      w->req.data = w;
      int rc = uv_queue_work(
          e.loop, &w->req,
          [](uv_work_t *r) {
            auto *w = static_cast<MetricsWork *>(r->data);
            try {
              w->out = admin::response(200, "text/plain; version=0.0.4; charset=utf-8",
                                       metrics(*w->srv->e));
            } catch (const std::exception &ex) {
              w->out = admin::response(500, kJson, json{{"error", ex.what()}}.dump() + "\n");
            }
          },
          [](uv_work_t *r, int) {
            auto *w = static_cast<MetricsWork *>(r->data);
            send_to(w->srv, w->id, std::move(w->out));
            delete w;
          });
      if (rc != 0) {
        delete w;
        send(c, admin::response(500, kJson, "{\"error\":\"could not queue the work\"}\n"));
      }
      return;
    }
    case admin::Route::kHealth: {
      // Storage: a small real write (this engine's heartbeat) committed by
      // the writer; loop: this very answer comes from it. No answer within
      // kHealthTimeoutMs is a failure too (the timer answers).
      c->health_wait = true;
      uv_timer_start(
          &c->timer,
          [](uv_timer_t *t) {
            auto *c = static_cast<AdminConn *>(t->data);
            if (c->health_wait)
              send(c,
                   admin::response(503, kJson,
                                   json{{"status", "fail"},
                                        {"loop", "ok"},
                                        {"storage", "the writer did not commit within " +
                                                        std::to_string(kHealthTimeoutMs) + " ms"}}
                                           .dump() +
                                       "\n"));
            else
              close_conn(c);
          },
          kHealthTimeoutMs, 0);
      std::shared_ptr<AdminServer> sp = e.admin;
      uint64_t id = c->id;
      std::string boot = e.boot_id;
      WriteReq r;
      r.fn = [boot](WriteCtx &w) {
        auto st = w.db.prepare("UPDATE wf_boots SET heartbeat_at = ?1 WHERE boot_id = ?2");
        st->bind(1, w.now).bind(2, boot).exec();
      };
      r.after = [sp, id](int rc, const std::string &err) {
        json body = rc == WF_OK ? json{{"status", "ok"}, {"loop", "ok"}, {"storage", "ok"}}
                                : json{{"status", "fail"}, {"loop", "ok"}, {"storage", err}};
        std::string text =
            admin::response(rc == WF_OK ? 200 : 503, kJson,
                            body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
        std::lock_guard<std::mutex> g(sp->mu);
        if (!sp->async_alive) return;
        sp->answers.emplace_back(id, std::move(text));
        uv_async_send(&sp->async);
      };
      e.submit(std::move(r));
      return;
    }
    case admin::Route::kNotFound:
      send(c, admin::error_response(404));
      return;
  }
}

void on_alloc(uv_handle_t *h, size_t, uv_buf_t *b) {
  auto *c = static_cast<AdminConn *>(h->data);
  *b = uv_buf_init(c->buf, sizeof c->buf);
}

void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *) {
  auto *c = static_cast<AdminConn *>(st->data);
  if (n < 0) {
    // EOF or error. A request being computed is still answered if the peer
    // only shut down its side; otherwise the connection ends here.
    c->peer_eof = true;
    if (!c->answered || c->shut)
      close_conn(c);
    else
      uv_read_stop(st);
    return;
  }
  if (n == 0 || c->answered) return;
  int rc = c->parser.feed(c->buf, static_cast<size_t>(n));
  if (rc == 0) return;
  if (rc == 200)
    serve(c, c->parser.path());
  else
    send(c, admin::error_response(rc));
}

void on_connection(uv_stream_t *server, int status) {
  auto *s = static_cast<AdminServer *>(server->data);
  if (status < 0 || s->stopping) return;
  auto *c = new AdminConn();
  c->srv = s;
  c->id = s->next_id++;
  uv_tcp_init(s->e->loop, &c->tcp);
  uv_timer_init(s->e->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  s->conns[c->id] = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t *>(&c->tcp)) != 0) {
    close_conn(c);
    return;
  }
  if (static_cast<int>(s->conns.size()) > s->e->opt.admin_max_connections) {
    send(c, admin::error_response(503));
    return;
  }
  uv_timer_start(
      &c->timer, [](uv_timer_t *t) { close_conn(static_cast<AdminConn *>(t->data)); },
      static_cast<uint64_t>(s->e->opt.admin_idle_timeout_ms), 0);
  uv_read_start(reinterpret_cast<uv_stream_t *>(&c->tcp), on_alloc, on_read);
}

void on_answers(uv_async_t *a) {
  auto *s = static_cast<AdminServer *>(a->data);
  std::vector<std::pair<uint64_t, std::string>> v;
  {
    std::lock_guard<std::mutex> g(s->mu);
    v.swap(s->answers);
  }
  for (auto &[id, text] : v) send_to(s, id, std::move(text));
}

}  // namespace

void Engine::admin_bind() {
  if (opt.admin_listen.empty()) return;
  sockaddr_storage addr;
  socklen_t len = 0;
  admin::parse_listen(opt.admin_listen, opt.admin_allow_remote, &addr, &len);
  auto s = std::make_shared<AdminServer>();
  s->e = this;
  s->fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s->fd < 0)
    fail(WF_EIO, std::string("options: \"admin_listen\": socket: ") + errno_text(errno));
  int one = 1;
  ::setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(s->fd, reinterpret_cast<sockaddr *>(&addr), len) != 0 || ::listen(s->fd, 64) != 0) {
    int err = errno;
    fail(err == EADDRINUSE ? WF_EBUSY : WF_EIO,
         "options: \"admin_listen\" " + opt.admin_listen + ": " + errno_text(err));
  }
  sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  if (::getsockname(s->fd, reinterpret_cast<sockaddr *>(&bound), &blen) == 0)
    s->port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6 *>(&bound)->sin6_port
                                          : reinterpret_cast<sockaddr_in *>(&bound)->sin_port);
  admin = std::move(s);
}

int Engine::admin_port() const { return admin ? admin->port : 0; }

void Engine::admin_attach() {
  if (!admin || admin->attached) return;
  AdminServer &s = *admin;
  uv_tcp_init(loop, &s.listener);
  s.listener.data = &s;
  if (uv_tcp_open(&s.listener, s.fd) != 0) {
    log(WF_LOG_ERROR, "admin endpoint could not start", json{{"event", "admin.failed"}});
    uv_close(reinterpret_cast<uv_handle_t *>(&s.listener), nullptr);
    return;
  }
  s.fd = -1;  // the handle owns it now
  int rc = uv_listen(reinterpret_cast<uv_stream_t *>(&s.listener), 64, on_connection);
  uv_async_init(loop, &s.async, on_answers);
  s.async.data = &s;
  {
    std::lock_guard<std::mutex> g(s.mu);
    s.async_alive = true;
  }
  s.attached = true;
  if (rc != 0)
    log(WF_LOG_ERROR, "admin endpoint could not listen",
        json{{"event", "admin.failed"}, {"error", uv_strerror(rc)}});
  else
    log(WF_LOG_INFO, "admin endpoint listening",
        json{{"event", "admin.listening"}, {"listen", opt.admin_listen}, {"port", s.port}});
}

void Engine::admin_detach() {
  if (!admin || !admin->attached) return;
  AdminServer &s = *admin;
  s.stopping = true;
  {
    std::lock_guard<std::mutex> g(s.mu);
    s.async_alive = false;
    s.answers.clear();
  }
  std::vector<AdminConn *> all;
  for (auto &kv : s.conns) all.push_back(kv.second);
  for (auto *c : all) close_conn(c);
  uv_close(reinterpret_cast<uv_handle_t *>(&s.listener), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&s.async), nullptr);
  s.attached = false;
}

}  // namespace wf
