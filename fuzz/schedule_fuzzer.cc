// Schedule documents: decoding never crashes, rejections are WF_EINVAL or
// WF_ETOOBIG, and an accepted schedule has its next due time set (cron: the
// first fire after `now`; delay: now + delay; at: the given time), targets a
// job or an event whose stored body re-decodes for the schedule's tenant, and
// re-encoding the schedule decodes to the same schedule.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cron.h"
#include "engine.h"
#include "fuzz_common.h"

using wffuzz::check_code;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const wf::Options opt = wffuzz::options();
  const int64_t now = wffuzz::kNow;
  const size_t max_doc = opt.limits.max_payload_bytes + 65536 + 1024;
  std::string text(reinterpret_cast<const char *>(data), size);
  wf::json doc;
  wf::NewSchedule s;
  try {
    doc = wf::parse_json(text, opt.limits, "schedule", max_doc);
    s = wf::decode_schedule(doc, opt, now, "schedule");
  } catch (const wf::Error &e) {
    check_code(e);
    return 0;
  }
  if (s.key.empty() || s.key.size() > 1024 || s.tenant.size() > 200) abort();
  if (s.catch_up != "latest" && s.catch_up != "all" && s.catch_up != "none") abort();
  if (s.catch_up_max < 1 || s.catch_up_max > 100000) abort();
  // next_due is set.
  const bool is_cron = !s.cron.empty();
  if (is_cron) {
    if (s.next_due <= now || s.next_due == INT64_MAX || s.next_due % 1000 != 0) abort();
    if (wf::Cron::parse(s.cron, s.tz).next_after(now) != s.next_due) abort();
  } else if (doc.contains("delay_ms") && !doc["delay_ms"].is_null()) {
    if (s.next_due < now || s.next_due > now + (INT64_C(1) << 45)) abort();
  } else if (s.next_due != wf::get_time(doc, "at", "schedule", now)) {
    abort();
  }
  // The body re-decodes as the target it names, for the schedule's tenant.
  if (s.target != "job" && s.target != "event") abort();
  wf::json body;
  try {
    body = wf::parse_json(s.body, opt.limits, "stored body", 1 << 24);
    if (body.value("tenant", wf::json()) != s.tenant) abort();
    if (s.target == "job") {
      wf::NewJob j = wf::decode_job(body, opt, now, "stored body");
      if (j.tenant != s.tenant || j.run_at != now) abort();
    } else {
      wf::NewEvent ev = wf::decode_event(body, opt, now, "stored body");
      if (ev.tenant != s.tenant || ev.event_id.empty()) abort();
    }
  } catch (const wf::Error &) {
    abort();
  }
  // Re-encoded (the due time as "at" unless cron), it decodes the same.
  wf::json again = wf::json::object();
  again["key"] = s.key;
  again["tenant"] = s.tenant;
  again["catch_up"] = s.catch_up;
  again["catch_up_max"] = s.catch_up_max;
  if (is_cron) {
    again["cron"] = s.cron;
    again["tz"] = s.tz;
  } else {
    again["at"] = s.next_due;
  }
  again[s.target] = body;
  try {
    wf::NewSchedule t = wf::decode_schedule(again, opt, now, "schedule again");
    if (t.key != s.key || t.tenant != s.tenant || t.cron != s.cron || t.next_due != s.next_due ||
        t.target != s.target || t.body != s.body || t.catch_up != s.catch_up ||
        t.catch_up_max != s.catch_up_max || (is_cron && t.tz != s.tz))
      abort();
  } catch (const wf::Error &) {
    abort();
  }
  return 0;
}
