// admin: the optional HTTP endpoint (option admin_listen) serving /metrics,
// /health, /ready and /info from the engine's loop. The request parsing and
// routing below are independent of sockets (tests and the fuzz target use
// them directly); admin.cpp runs them on libuv TCP handles.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <memory>
#include <string>

struct http_parser;
struct http_parser_settings;

namespace wf::admin {

// Parses "host:port" (IPv4 literal, "[IPv6 literal]" or "localhost"; port
// 0..65535, 0 = ephemeral) into `out`. Throws Error(WF_EINVAL) naming the
// option; a host outside 127.0.0.0/8 and ::1 is refused unless
// `allow_remote`.
void parse_listen(const std::string &spec, bool allow_remote, sockaddr_storage *out,
                  socklen_t *len);

constexpr size_t kMaxRequestBytes = 8192;  // request line, headers and body

// One HTTP/1.x request read incrementally with libhttp-parser. Only GET is
// served; the first problem decides the answer.
class RequestParser {
 public:
  explicit RequestParser(size_t max_bytes = kMaxRequestBytes);
  ~RequestParser();
  RequestParser(const RequestParser &) = delete;
  RequestParser &operator=(const RequestParser &) = delete;
  // Feeds bytes. Returns 0 while the request is incomplete, 200 once a
  // complete GET request was read (path() is its path), or the error status
  // to answer with: 400 malformed, 405 not GET, 413 over max_bytes. Bytes
  // after a complete request or an error are ignored.
  int feed(const char *data, size_t n);
  const std::string &path() const { return path_; }

 private:
  static int on_url(http_parser *p, const char *at, size_t n);
  static int on_headers_complete(http_parser *p);
  static int on_message_complete(http_parser *p);
  std::unique_ptr<http_parser> parser_;
  std::unique_ptr<http_parser_settings> settings_;
  size_t max_, seen_ = 0;
  int result_ = 0;
  bool complete_ = false;
  std::string url_, path_;
};

enum class Route { kMetrics, kHealth, kReady, kInfo, kNotFound };
// The route of a request path (the query string is ignored).
Route route(const std::string &path);

// A whole HTTP/1.1 response that closes the connection.
std::string response(int status, const char *content_type, const std::string &body);
// The response for an error status of RequestParser::feed (400/405/413) or 404/503.
std::string error_response(int status);

}  // namespace wf::admin
