// cron: parsing cron expressions and computing the next fire time in an IANA
// time zone (Howard Hinnant's date/tz library reading the system zoneinfo).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace wf {

// A parsed cron expression: 5 fields (minute hour day-of-month month
// day-of-week) or 6 with a leading seconds field; ranges, steps, lists, names
// (JAN..DEC, SUN..SAT), and @hourly/@daily/@midnight/@weekly/@monthly/@yearly/
// @annually. Day-of-month and day-of-week follow Vixie cron: when both are
// restricted, a day matches if either matches.
//
// Daylight-saving policy (local wall-clock times in `tz`):
//  - a local time skipped by a spring-forward transition fires once, at the
//    first valid instant after the gap (e.g. 02:30 on a day where 02:00-03:00
//    does not exist fires at 03:00 local);
//  - a local time repeated by a fall-back transition fires once, at its first
//    occurrence.
class Cron {
 public:
  // Throws wf::Error(WF_EINVAL) naming the bad field, or an unknown time zone.
  static Cron parse(const std::string &expr, const std::string &tz = "UTC");
  // The first fire time strictly after `after_ms` (ms since the Unix epoch),
  // or INT64_MAX if there is none within 5 years (e.g. "0 0 30 2 *").
  int64_t next_after(int64_t after_ms) const;
  const std::string &expr() const;
  const std::string &tz() const;

  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace wf
