// A nats-server with JetStream for tests and benchmarks: started on
// 127.0.0.1 on a free port with a temporary store directory, stopped (and
// the directory removed) by the destructor. Plus small libnats helpers to
// create streams and read their state. No GoogleTest in here (bench/ uses it).
#pragma once

#include <arpa/inet.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace wfnats {

// Polls `pred` until it holds or `ms` pass (a condition with a deadline).
inline bool wait_until(const std::function<bool()> &pred, int ms = 20000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// A port nothing listens on right now (bound to 127.0.0.1:0, then closed).
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
    socklen_t l = sizeof a;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&a), &l) == 0) port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

inline bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

class Server {
 public:
  Server() = default;
  ~Server() {
    stop();
    if (!dir_.empty()) {
      std::string cmd = "rm -rf '" + dir_ + "'";
      if (system(cmd.c_str()) != 0) {
      }
    }
  }
  // Starts nats-server -js; false if it did not listen within 15 s.
  bool start() {
    if (dir_.empty()) {
      char tmpl[] = "/tmp/wfnats-XXXXXX";
      char *d = mkdtemp(tmpl);
      if (!d) return false;
      dir_ = d;
    }
    if (port_ <= 0) port_ = free_port();
    std::string port = std::to_string(port_), store = dir_ + "/js", log = dir_ + "/server.log";
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      execlp("nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", port.c_str(), "-sd",
             store.c_str(), "-l", log.c_str(), static_cast<char *>(nullptr));
      _exit(127);
    }
    return wait_until([&] { return port_open(port_); }, 15000);
  }
  // SIGTERM and reap (the same port and store are used by a later start()).
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int st;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  void set_port(int p) { port_ = p; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

// A plain libnats client for setting up streams and checking them.
class Client {
 public:
  explicit Client(const std::string &url) {
    if (natsConnection_ConnectTo(&nc_, url.c_str()) == NATS_OK)
      natsConnection_JetStream(&js_, nc_, nullptr);
  }
  ~Client() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  bool ok() const { return js_ != nullptr; }
  jsCtx *js() { return js_; }
  natsConnection *nc() { return nc_; }

  bool add_stream(const std::string &name, const std::vector<std::string> &subjects,
                  int64_t dup_window_ms = 120000) {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name.c_str();
    std::vector<const char *> subj;
    for (auto &s : subjects) subj.push_back(s.c_str());
    sc.Subjects = subj.data();
    sc.SubjectsLen = static_cast<int>(subj.size());
    sc.Storage = js_FileStorage;
    sc.Duplicates = dup_window_ms * 1000000;
    jsStreamInfo *si = nullptr;
    jsErrCode je;
    natsStatus s = js_AddStream(&si, js_, &sc, nullptr, &je);
    jsStreamInfo_Destroy(si);
    return s == NATS_OK;
  }
  // Messages in the stream (-1 on error).
  int64_t stream_msgs(const std::string &name) {
    jsStreamInfo *si = nullptr;
    jsErrCode je;
    if (js_GetStreamInfo(&si, js_, name.c_str(), nullptr, &je) != NATS_OK) return -1;
    int64_t n = static_cast<int64_t>(si->State.Msgs);
    jsStreamInfo_Destroy(si);
    return n;
  }
  // {NumPending, NumAckPending} of a consumer ({-1,-1} on error).
  std::pair<int64_t, int64_t> consumer_pending(const std::string &stream, const std::string &dur) {
    jsConsumerInfo *ci = nullptr;
    jsErrCode je;
    if (js_GetConsumerInfo(&ci, js_, stream.c_str(), dur.c_str(), nullptr, &je) != NATS_OK)
      return {-1, -1};
    std::pair<int64_t, int64_t> r{static_cast<int64_t>(ci->NumPending), ci->NumAckPending};
    jsConsumerInfo_Destroy(ci);
    return r;
  }
  // Publishes and waits for the PubAck; true if stored (or a duplicate).
  bool publish(const std::string &subject, const std::string &data,
               const std::vector<std::pair<std::string, std::string>> &headers) {
    natsMsg *m = nullptr;
    if (natsMsg_Create(&m, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size())) !=
        NATS_OK)
      return false;
    for (auto &h : headers) natsMsgHeader_Set(m, h.first.c_str(), h.second.c_str());
    jsPubAck *pa = nullptr;
    jsErrCode je;
    natsStatus s = js_PublishMsg(&pa, js_, m, nullptr, &je);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s == NATS_OK;
  }

 private:
  natsConnection *nc_ = nullptr;
  jsCtx *js_ = nullptr;
};

}  // namespace wfnats
