// Event envelopes: decoding never crashes, rejections are WF_EINVAL or
// WF_ETOOBIG, and an accepted envelope satisfies the limits and is a fixed
// point: its stored form (the normalized envelope) re-parses under the same
// limits and decodes, at another time, to the same envelope and fields.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine.h"
#include "fuzz_common.h"

using wffuzz::check_code;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const wf::Options opt = wffuzz::options();
  const int64_t now = wffuzz::kNow;
  const size_t max_doc = opt.limits.max_payload_bytes + 65536 + 1024;  // as wf_event_publish
  std::string text(reinterpret_cast<const char *>(data), size);
  wf::NewEvent ev;
  try {
    wf::json doc = wf::parse_json(text, opt.limits, "event", max_doc);
    ev = wf::decode_event(doc, opt, now, "event");
  } catch (const wf::Error &e) {
    check_code(e);
    return 0;
  }
  // Limits.
  if (ev.event_id.empty() || ev.event_id.size() > 512) abort();
  if (ev.type.empty() || ev.type.size() > 200) abort();
  if (ev.tenant.size() > 200 || ev.correlation_id.size() > 1024) abort();
  // The normalized envelope holds every field, occurred_at in ms.
  const wf::json &env = ev.envelope;
  if (!env.is_object()) abort();
  if (env.value("event_id", wf::json()) != ev.event_id) abort();
  if (env.value("type", wf::json()) != ev.type) abort();
  if (env.value("tenant", wf::json()) != ev.tenant) abort();
  if (!env.contains("occurred_at") || !env["occurred_at"].is_number_integer()) abort();
  if (!env.contains("payload")) abort();
  if (env["payload"].dump().size() > opt.limits.max_payload_bytes) abort();
  // Stored form (as insert_event writes it) decodes to the same envelope.
  std::string stored = env.dump();
  wf::NewEvent again;
  try {
    wf::json back = wf::parse_json(stored, opt.limits, "stored event", 1 << 24);
    again = wf::decode_event(back, opt, now + 123456, "stored event");
  } catch (const wf::Error &) {
    abort();  // accepted once, rejected after a round trip
  }
  if (again.envelope != env || again.event_id != ev.event_id || again.type != ev.type ||
      again.tenant != ev.tenant || again.correlation_id != ev.correlation_id)
    abort();
  if (again.envelope.dump() != stored) abort();
  return 0;
}
