// Saga reducer output: decoding never crashes, rejections are WF_EINVAL or
// WF_ETOOBIG, and accepted output is confined to the saga: every command and
// schedule is for the saga's tenant and carries the saga reference, command
// metadata names the correlation id and the saga, and the state is within
// max_payload_bytes. Decoding without effects reads the same state and done.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine.h"
#include "fuzz_common.h"

using wffuzz::check_code;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const wf::Options opt = wffuzz::options();
  const int64_t now = wffuzz::kNow;
  static const std::string saga = "orders", tenant = "acme", corr = "order-1";
  static const wf::json event = {
      {"event_id", "e-1"},
      {"type", "order.placed"},
      {"tenant", "acme"},
      {"correlation_id", "order-1"},
      {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
      {"occurred_at", now},
      {"payload", {{"order", "order-1"}}}};
  std::string text(reinterpret_cast<const char *>(data), size);
  wf::StepOutput o;
  try {
    o = wf::decode_saga_output(text, opt, saga, tenant, corr, event, now, true);
  } catch (const wf::Error &e) {
    check_code(e);
    // Without effects fewer fields are read: may accept, never crash.
    try {
      wf::decode_saga_output(text, opt, saga, tenant, corr, event, now, false);
    } catch (const wf::Error &e2) {
      check_code(e2);
    }
    return 0;
  }
  if (o.state.dump().size() > opt.limits.max_payload_bytes) abort();
  const wf::json ref = {{"saga", saga}, {"tenant", tenant}, {"correlation_id", corr}};
  for (const wf::NewJob &j : o.commands) {
    if (j.tenant != tenant) abort();
    if (j.origin.empty() || wf::json::parse(j.origin) != ref) abort();
    wf::json meta = wf::json::parse(j.metadata);
    if (!meta.is_object() || !meta.contains("correlation_id")) abort();
    if (meta.value("saga", wf::json()) != saga) abort();
    if (!meta.contains("traceparent")) abort();  // given or inherited from the event
    if (j.payload.size() > opt.limits.max_payload_bytes) abort();
  }
  for (const wf::NewSchedule &s : o.schedules) {
    if (s.tenant != tenant || s.origin.empty() || wf::json::parse(s.origin) != ref) abort();
    if (wf::json::parse(s.body).value("tenant", wf::json()) != tenant) abort();
  }
  // The same text without effects: same state and done.
  try {
    wf::StepOutput p = wf::decode_saga_output(text, opt, saga, tenant, corr, event, now, false);
    if (p.state != o.state || p.done != o.done || !p.commands.empty()) abort();
  } catch (const wf::Error &) {
    abort();
  }
  return 0;
}
