// The admin endpoint (option admin_listen) over real HTTP on 127.0.0.1: a raw
// socket client sends good, malformed, oversized and non-GET requests, opens
// too many connections, and watches /ready through a drain.
#include "admin.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

using namespace wft;

namespace {

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{10, 0};  // a guard against a hang, not a synchronisation
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(0, connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a)) << strerror(errno);
  return fd;
}

void send_all(int fd, const std::string &s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may answer and stop reading first
    off += static_cast<size_t>(n);
  }
}

// Reads until the server closes (or the guard timeout).
std::string read_all(int fd) {
  std::string out;
  char b[4096];
  for (;;) {
    ssize_t n = recv(fd, b, sizeof b, 0);
    if (n <= 0) break;
    out.append(b, static_cast<size_t>(n));
  }
  return out;
}

struct Reply {
  int status = 0;
  std::string head, body;
};

Reply parse_reply(const std::string &r) {
  Reply out;
  size_t sp = r.find(' ');
  if (r.compare(0, 7, "HTTP/1.") != 0 || sp == std::string::npos) return out;
  out.status = std::atoi(r.c_str() + sp + 1);
  size_t end = r.find("\r\n\r\n");
  out.head = r.substr(0, end);
  if (end != std::string::npos) out.body = r.substr(end + 4);
  return out;
}

Reply roundtrip(int port, const std::string &request) {
  int fd = connect_to(port);
  send_all(fd, request);
  Reply r = parse_reply(read_all(fd));
  close(fd);
  return r;
}

Reply get(int port, const std::string &path) {
  return roundtrip(port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

class AdminTest : public EngineTest {
 protected:
  int port() {
    int p = stats()["engine"]["admin_port"].get<int>();
    EXPECT_GT(p, 0);
    return p;
  }
};

TEST_F(AdminTest, ServesMetricsHealthReadyInfo) {
  const std::string key(64, 'b');
  std::string opts =
      "{\"durability\":\"normal\",\"admin_listen\":\"127.0.0.1:0\","
      "\"encryption_key\":\"" +
      key + "\"}";
  open(opts.c_str(), false);
  Sink sink;
  ASSERT_EQ(WF_OK, wf_effect_register(e, "x", nullptr, Sink::cb, &sink));
  ASSERT_EQ(WF_OK, wf_saga_register(
                       e, "s", "{\"start\":[\"go\"]}",
                       [](void *, const char *, size_t, wf_buf *o) {
                         return wf_buf_set(o, "{\"state\":1}", 11) == WF_OK ? 0 : 1;
                       },
                       nullptr));
  enqueue({{"effect", "x"}});
  ASSERT_EQ(WF_OK, wf_start(e));
  ASSERT_TRUE(sink.wait_count(1));
  sync();
  int p = port();

  Reply m = get(p, "/metrics");
  EXPECT_EQ(200, m.status) << m.head;
  EXPECT_NE(std::string::npos, m.head.find("Content-Type: text/plain; version=0.0.4"));
  EXPECT_NE(std::string::npos, m.body.find("wfengine_jobs_completed_total{effect=\"x\"} 1"))
      << m.body;

  Reply h = get(p, "/health");
  EXPECT_EQ(200, h.status) << h.body;
  EXPECT_EQ("ok", json::parse(h.body)["storage"]);

  Reply r = get(p, "/ready?verbose=1");
  EXPECT_EQ(200, r.status) << r.body;
  EXPECT_EQ(true, json::parse(r.body)["ready"]);

  Reply i = get(p, "/info");
  ASSERT_EQ(200, i.status) << i.body;
  json info = json::parse(i.body);
  EXPECT_EQ(wf_version(), info["version"]);
  EXPECT_EQ("x", info["effects"][0]["name"]);
  EXPECT_EQ("s", info["sagas"][0]);
  EXPECT_EQ(true, info["options"]["encrypted"]);
  EXPECT_FALSE(info["options"].contains("encryption_key"));
  EXPECT_EQ(std::string::npos, i.body.find(key));

  EXPECT_EQ(404, get(p, "/nope").status);
  // HTTP/1.0 works too.
  EXPECT_EQ(200, roundtrip(p, "GET /ready HTTP/1.0\r\n\r\n").status);

  // Draining: not ready any more, still alive.
  ASSERT_EQ(WF_OK, wf_drain(e, 10000));
  r = get(p, "/ready");
  EXPECT_EQ(503, r.status);
  EXPECT_EQ("draining", json::parse(r.body)["reason"]);
  EXPECT_EQ(200, get(p, "/health").status);
}

TEST_F(AdminTest, RefusesBadRequests) {
  open("{\"durability\":\"normal\",\"admin_listen\":\"127.0.0.1:0\"}", false);
  ASSERT_EQ(WF_OK, wf_start(e));
  int p = port();
  for (const char *m : {"POST", "PUT", "DELETE", "HEAD", "OPTIONS"}) {
    Reply r = roundtrip(p, std::string(m) + " /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(405, r.status) << m;
    EXPECT_NE(std::string::npos, r.head.find("Allow: GET")) << r.head;
  }
  EXPECT_EQ(400, roundtrip(p, "NOT HTTP AT ALL\r\n\r\n").status);
  EXPECT_EQ(400, roundtrip(p, "GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n").status);
  EXPECT_EQ(400, roundtrip(p, "GET http://example.invalid/metrics HTTP/1.1\r\n\r\n").status);
  std::string big = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(20000, 'a') + "\r\n\r\n";
  EXPECT_EQ(413, roundtrip(p, big).status);
  // A request split into many small writes is put together.
  int fd = connect_to(p);
  for (char c : std::string("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"))
    send_all(fd, std::string(1, c));
  EXPECT_EQ(200, parse_reply(read_all(fd)).status);
  close(fd);
  // The engine still serves after all that.
  EXPECT_EQ(200, get(p, "/metrics").status);
}

TEST_F(AdminTest, BoundsConnectionsAndIdleTime) {
  open(
      "{\"durability\":\"normal\",\"admin_listen\":\"127.0.0.1:0\",\"admin_max_connections\":2,"
      "\"admin_idle_timeout_ms\":3000}",
      false);
  ASSERT_EQ(WF_OK, wf_start(e));
  int p = port();
  // Two idle connections take the slots: the third is told so. (The loop
  // accepts in arrival order.)
  int a = connect_to(p), b = connect_to(p);
  Reply r = get(p, "/ready");
  EXPECT_EQ(503, r.status) << r.body;
  // Idle connections are closed by the server after admin_idle_timeout_ms.
  EXPECT_EQ("", read_all(a));
  EXPECT_EQ("", read_all(b));
  close(a);
  close(b);
  EXPECT_EQ(200, get(p, "/ready").status);
}

TEST_F(AdminTest, ListenOptionIsChecked) {
  wf_engine *x = nullptr;
  std::string db = dir + "/o.db";
  for (const char *bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:http",
                          "nohost:80", "0.0.0.0:0", "10.1.2.3:9464", "[::]:0", "[zz]:1"}) {
    std::string o = std::string("{\"admin_listen\":\"") + bad + "\"}";
    EXPECT_EQ(WF_EINVAL, wf_open(db.c_str(), o.c_str(), &x)) << bad;
    EXPECT_NE(std::string(wf_last_error()).find("admin_listen"), std::string::npos)
        << wf_last_error();
  }
  // Off by default: no port.
  open("{\"durability\":\"normal\"}", false);
  EXPECT_EQ(0, stats()["engine"]["admin_port"]);
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  // A port in use fails the open, naming the option.
  open("{\"durability\":\"normal\",\"admin_listen\":\"127.0.0.1:0\"}", false);
  std::string o = "{\"admin_listen\":\"127.0.0.1:" + std::to_string(port()) + "\"}";
  EXPECT_EQ(WF_EBUSY, wf_open(db.c_str(), o.c_str(), &x));
  EXPECT_NE(std::string(wf_last_error()).find("admin_listen"), std::string::npos);
  // Closing an engine that never started frees the socket.
  ASSERT_EQ(WF_OK, wf_close(e));
  e = nullptr;
  ASSERT_EQ(WF_OK, wf_open(db.c_str(), o.c_str(), &x)) << wf_last_error();
  EXPECT_EQ(WF_OK, wf_close(x));
}

TEST(AdminParser, FeedsAndRoutes) {
  wf::admin::RequestParser p;
  EXPECT_EQ(0, p.feed("GET /met", 8));
  EXPECT_EQ(0, p.feed("rics?x=1 HTTP/1.1\r\n", 19));
  EXPECT_EQ(200, p.feed("\r\n", 2));
  EXPECT_EQ("/metrics", p.path());
  EXPECT_EQ(200, p.feed("garbage", 7));  // after a complete request: ignored
  EXPECT_EQ(wf::admin::Route::kMetrics, wf::admin::route(p.path()));
  EXPECT_EQ(wf::admin::Route::kNotFound, wf::admin::route("/metrics/"));
  wf::admin::RequestParser small(16);
  EXPECT_EQ(413, small.feed("GET /metrics HTTP/1.1\r\n\r\n", 25));
}

}  // namespace
