// HTTP provider configuration ({"type":"http", ...}): never crash; errors are
// WF_EINVAL/WF_ETOOBIG. Secret references resolve against a fixed table (no
// environment, no files). Accepted configurations: the URL is http(s), the
// method one of the five, keys 16..128 bytes, limits within range; filling
// the template from a fixed job never crashes. The Retry-After parser is fed
// the same text.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

#include "fuzz_common.h"
#include "providers/http_util.h"

namespace {

std::optional<std::string> lookup(const std::string &name) {
  if (name == "GOOD" || name == "/good")
    return std::string("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  if (name == "BAD" || name == "/bad") return std::string("whsec_???");
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  namespace h = wf::prov::http;
  int64_t delay = h::retry_after_ms(text.substr(0, 80), wffuzz::kNow, 86400000);
  if (delay != -1 && (delay < 0 || delay > 86400000)) abort();
  wf::Options opt = wffuzz::options();
  try {
    wf::json doc = wf::parse_json(text, opt.limits, "config", 1 << 16);
    h::SecretSource src{lookup, lookup};
    h::Config c = h::parse_config(doc, src);
    std::string lu = c.url.substr(0, 8);
    for (auto &ch : lu) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lu.rfind("http://", 0) != 0 && lu.rfind("https://", 0) != 0) abort();
    if (c.method != "POST" && c.method != "PUT" && c.method != "PATCH" && c.method != "DELETE" &&
        c.method != "GET")
      abort();
    if (c.max_body_bytes > (1u << 20) || c.timeout_ms < 0 || c.connect_timeout_ms < 1) abort();
    for (const auto &k : c.secret_keys)
      if (k.size() < 16 || k.size() > 128) abort();
    for (const auto &n : c.result_headers)
      for (char ch : n)
        if (std::isupper(static_cast<unsigned char>(ch))) abort();
    wf::json payload = {{"a", "x/y"}, {"n", 1}, {"o", {{"b", true}}}};
    try {
      std::string u = h::expand_url(c, "1", "t", "k", &payload);
      if (u.size() < 8) abort();
    } catch (const std::runtime_error &) {
      // a payload field the fixed job does not have
    }
  } catch (const wf::Error &e) {
    wffuzz::check_code(e);
  }
  return 0;
}
