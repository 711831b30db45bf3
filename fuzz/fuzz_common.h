// What the fuzz targets share: the limits they decode under, a fixed "now",
// and the only rejections a decoder may answer with.
#pragma once

#include <cstdint>
#include <cstdlib>

#include "engine.h"

namespace wffuzz {

// Small limits so that the fuzzer reaches them.
inline wf::Options options() {
  wf::Options opt;
  opt.limits.max_payload_bytes = 4096;
  opt.limits.max_depth = 16;
  return opt;
}

constexpr int64_t kNow = INT64_C(1795428000000);  // 2026-11-23T10:00:00Z

// A rejection must be WF_EINVAL or WF_ETOOBIG; anything else is a finding.
inline void check_code(const wf::Error &e) {
  if (e.code() != WF_EINVAL && e.code() != WF_ETOOBIG) abort();
}

}  // namespace wffuzz
