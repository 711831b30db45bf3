// Job documents: decoding never crashes, and whatever is accepted satisfies
// the limits and decodes identically when re-encoded.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const wf::Options opt = wffuzz::options();
  std::string text(reinterpret_cast<const char *>(data), size);
  try {
    wf::json doc = wf::parse_json(text, opt.limits, "job", 8192);
    wf::NewJob j = wf::decode_job(doc, opt, 1000, "job");
    if (j.effect.empty() || j.effect.size() > 200) abort();
    if (j.payload.size() > opt.limits.max_payload_bytes) abort();
    if (j.key && (j.key->empty() || j.key->size() > 1024)) abort();
    // Round trip: the stored form decodes to the same job.
    wf::json again = wf::json::object();
    again["effect"] = j.effect;
    again["tenant"] = j.tenant;
    again["payload"] = wf::json::parse(j.payload);
    again["metadata"] = wf::json::parse(j.metadata);
    again["priority"] = j.priority;
    again["run_at"] = j.run_at;
    if (j.key) again["key"] = *j.key;
    if (j.max_attempts) again["max_attempts"] = *j.max_attempts;
    wf::NewJob k = wf::decode_job(again, opt, 1000, "job");
    if (k.payload != j.payload || k.metadata != j.metadata || k.run_at != j.run_at ||
        k.priority != j.priority || k.key != j.key || k.tenant != j.tenant)
      abort();
  } catch (const wf::Error &e) {
    if (e.code() != WF_EINVAL && e.code() != WF_ETOOBIG) abort();
  }
  return 0;
}
