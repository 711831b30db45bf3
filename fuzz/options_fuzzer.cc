// Options and effect policies: never crash; errors are WF_EINVAL/WF_ETOOBIG.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  try {
    wf::Options o = wf::parse_options(text.c_str());
    if (o.max_inflight < 1 || o.lease_ms < 100 || o.limits.max_depth < 2) abort();
  } catch (const wf::Error &e) {
    if (e.code() != WF_EINVAL && e.code() != WF_ETOOBIG) abort();
  }
  try {
    wf::EffectPolicy p = wf::parse_policy(text.c_str(), wf::Limits{});
    if (p.circuit.enabled && p.circuit.min_attempts > p.circuit.window) abort();
  } catch (const wf::Error &e) {
    if (e.code() != WF_EINVAL && e.code() != WF_ETOOBIG) abort();
  }
  return 0;
}
