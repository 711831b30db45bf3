// Cron expressions: parsing never crashes, rejections are WF_EINVAL, and an
// accepted expression yields fire times that are whole seconds, strictly after
// the query time (or INT64_MAX), and stable: asking again from just before a
// fire returns that same fire.
// Input: "<expression>\n<time zone>"; without a newline the zone is UTC.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cron.h"
#include "util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  std::string expr = text, tz = "UTC";
  if (size_t nl = text.find('\n'); nl != std::string::npos) {
    expr = text.substr(0, nl);
    tz = text.substr(nl + 1);
  }
  try {
    wf::Cron c = wf::Cron::parse(expr, tz);
    if (c.expr() != expr || c.tz() != tz) abort();
    static const int64_t kStarts[] = {
        INT64_MIN,       -1,        0,
        1772953199999,  // 2026-03-08T06:59:59.999Z, just before New York springs forward
        1793509200000,  // 2026-11-01T05:00:00Z, New York's repeated hour begins
        1793512800000,  // 2026-11-01T06:00:00Z, second pass of that hour
        1774746000000,  // 2026-03-29T01:00:00Z, Berlin springs forward
        1792890000000,  // 2026-10-25T01:00:00Z, Berlin falls back
        253402300798999, INT64_MAX,
    };
    for (int64_t after : kStarts) {
      int64_t t = after;
      // A few consecutive fires from each start.
      for (int i = 0; i < 4; ++i) {
        int64_t n = c.next_after(t);
        if (n == INT64_MAX) break;
        if (n <= t || n % 1000 != 0) abort();
        if (n - 1 > t && c.next_after(n - 1) != n) abort();
        t = n;
      }
    }
  } catch (const wf::Error &e) {
    if (e.code() != WF_EINVAL) abort();
  }
  return 0;
}
