// Admin endpoint requests: libhttp-parser behind RequestParser never crashes,
// answers only 0 (incomplete), 200, 400, 405 or 413, never reads more than
// its limit, and is stable: the same bytes fed whole or in two pieces (split
// at the first input byte's value) give the same answer and path. An
// accepted request has a path starting with '/' without query or fragment.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "admin.h"

namespace {
int feed(wf::admin::RequestParser &p, const std::string &text, size_t split) {
  if (split > text.size()) split = text.size();
  int rc = p.feed(text.data(), split);
  if (rc == 0) rc = p.feed(text.data() + split, text.size() - split);
  return rc;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  wf::admin::RequestParser whole(512), parts(512);
  int a = feed(whole, text, text.size());
  int b = feed(parts, text, size ? data[0] : 0);
  if (a != 0 && a != 200 && a != 400 && a != 405 && a != 413) abort();
  if (a != b) abort();
  if (a == 200) {
    const std::string &path = whole.path();
    if (path != parts.path()) abort();
    if (path.empty() || path[0] != '/' || path.find_first_of("?#") != std::string::npos) abort();
    (void)wf::admin::route(path);
  }
  if (a == 413 && size <= 512) abort();
  if (a != 0 && a != 200) {
    std::string r = wf::admin::error_response(a);
    std::string head = "HTTP/1.1 " + std::to_string(a) + " ";
    if (r.compare(0, head.size(), head) != 0) abort();
  }
  return 0;
}
