// The pure parts of the HTTP webhook provider (http.cpp), unit-tested and
// fuzzed on their own: the configuration decoder, URL templates, response
// classification and Retry-After, the job result, the SSRF address
// classifier and the Standard Webhooks signer. Nothing here does I/O except
// resolving secret references (through a SecretSource).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wf::prov::http {

using json = nlohmann::json;

// ---------------------------------------------------------------- addresses

// What a resolved peer address is, for the SSRF guard. Only kPublic is
// reachable unless the endpoint sets "allow_private_networks".
enum class AddrClass {
  kPublic,
  kUnspecified,  // 0.0.0.0/8, ::
  kLoopback,     // 127.0.0.0/8, ::1
  kPrivate,      // 10/8, 172.16/12, 192.168/16
  kLinkLocal,    // 169.254/16 (cloud metadata 169.254.169.254), fe80::/10
  kCgnat,        // 100.64/10
  kUniqueLocal,  // fc00::/7, fec0::/10 (deprecated site-local)
  kMulticast,    // 224/4, ff00::/8
  kReserved,     // 240/4, broadcast, 192.0.0/24, TEST-NETs, 198.18/15, 2001:db8::/32, ...
  kMapped,       // ::ffff:0:0/96 (IPv4-mapped), ::/96 (IPv4-compatible)
};
const char *addr_class_name(AddrClass c);
// Classifies an AF_INET or AF_INET6 socket address (anything else is
// kReserved). NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16)
// addresses take the class of the IPv4 address they embed.
AddrClass classify(const sockaddr *sa);
// The same for a textual address (inet_pton); kReserved if it does not parse.
AddrClass classify(const std::string &ip);
// Whether the guard lets a connection to an address of class `c` through.
bool addr_allowed(AddrClass c, bool allow_private_networks);

// ------------------------------------------------------------------ signing

// Standard Webhooks signatures (https://www.standardwebhooks.com):
// "v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>", one per
// key, space-separated (key rotation).
class Signer {
 public:
  Signer() = default;
  explicit Signer(std::vector<std::string> keys) : keys_(std::move(keys)) {}
  Signer(const Signer &) = delete;
  Signer &operator=(const Signer &) = delete;
  Signer(Signer &&) = default;
  Signer &operator=(Signer &&) = default;
  ~Signer();  // wipes the keys
  bool empty() const { return keys_.empty(); }
  std::string sign(std::string_view id, int64_t timestamp_s, std::string_view body) const;

 private:
  std::vector<std::string> keys_;  // raw key bytes
};
// Decodes a secret ("whsec_" + base64, or bare base64) to its key bytes.
// Throws Error(WF_EINVAL) naming `what`, never quoting the secret.
std::string decode_secret(const std::string &secret, const std::string &what);
std::string base64(std::string_view bytes);

// ------------------------------------------------------------ configuration

// Where secret references are resolved ("env:NAME", "file:/path").
struct SecretSource {
  std::function<std::optional<std::string>(const std::string &name)> env;
  std::function<std::optional<std::string>(const std::string &path)> file;
};
// getenv and reading the file (at most 64 KiB, surrounding whitespace cut).
SecretSource system_secrets();

// One piece of a URL template: literal text, or a variable ("tenant", "key",
// "id" or "payload.a.b") whose value is URL-encoded when filled in.
struct UrlPiece {
  bool var = false;
  std::string text;               // literal text, or the variable's name
  std::vector<std::string> path;  // payload path (var only; empty: not a payload field)
};

struct Config {
  std::string url;  // as configured (may be a template)
  std::vector<UrlPiece> pieces;
  bool uses_payload = false;
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;  // name, value
  int64_t timeout_ms = 30000;                                // whole request (0: none)
  int64_t connect_timeout_ms = 10000;
  bool allow_private_networks = false;
  std::string ca_file;
  std::vector<std::string> result_headers;  // lower case
  size_t max_body_bytes = 65536;
  int64_t max_retry_after_ms = 86400000;
  std::string user_agent = "wfengine-webhooks/1";
  std::vector<std::string> secret_keys;  // decoded key bytes; never logged
};

// Decodes a whole {"type":"http", ...} document (the effect-policy keys are
// accepted and ignored here). Throws Error(WF_EINVAL) naming the key.
Config parse_config(const json &doc, const SecretSource &secrets);

// Fills a URL template from the job; values are percent-encoded (RFC 3986
// unreserved characters stay). Throws std::runtime_error when a payload
// field is missing or not a scalar (the job cannot be delivered).
std::string expand_url(const Config &c, const std::string &id, const std::string &tenant,
                       const std::string &key, const json *payload);
std::string url_encode(std::string_view s);

// ----------------------------------------------------------------- responses

enum class Verdict { kComplete, kRetry, kFail };
// 2xx complete; 408, 425, 429, 5xx retry; everything else fails for good.
Verdict classify_status(long status);
// A Retry-After value as a delay in ms from `now_ms` (delta-seconds or an
// HTTP date), cut to [0, cap_ms]; -1 when absent or unreadable.
int64_t retry_after_ms(std::string_view value, int64_t now_ms, int64_t cap_ms);

// Response headers kept while a response arrives: lower-case name, value
// (repeated headers joined with ", ").
using HeaderList = std::vector<std::pair<std::string, std::string>>;
// Parses one raw header line into `h` when its name is one of `keep`; a
// status line ("HTTP/...") clears `h` (a new response starts).
void collect_header(std::string_view line, const std::vector<std::string> &keep, HeaderList &h);
const std::string *find_header(const HeaderList &h, std::string_view lower_name);

// The job result of a delivered webhook: {"status", "headers": {selected},
// "body": parsed JSON when the response is JSON and arrived whole, else text
// (invalid UTF-8 replaced), "body_truncated": true when cut}.
json make_result(long status, const HeaderList &h, const std::vector<std::string> &selected,
                 const std::string &body, bool truncated);

// A header value safe to send (no control characters, at most `max` bytes).
bool header_value_ok(std::string_view v, size_t max = 8192);

}  // namespace wf::prov::http
