// NATS provider configurations ({"type":"nats"} and {"type":"nats_consumer"}):
// decoding never crashes, rejections are WF_EINVAL or WF_ETOOBIG, and an
// accepted configuration holds what the providers rely on: a subject
// template that expands to a publishable subject, sendable header values,
// names without '.', ranges respected.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_common.h"
#include "providers/nats_map.h"

using wffuzz::check_code;
namespace nm = wf::prov::natsmap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const wf::Options opt = wffuzz::options();
  std::string text(reinterpret_cast<const char *>(data), size);
  wf::json doc;
  try {
    doc = wf::parse_json(text, opt.limits, "config", 1 << 20);
  } catch (const wf::Error &e) {
    check_code(e);
    return 0;
  }
  bool consumer = doc.is_object() && doc.value("type", wf::json()) == "nats_consumer";
  try {
    if (!consumer) {
      nm::PublisherConfig c = nm::decode_publisher(doc);
      if (c.url.empty() || c.ack_timeout_ms < 1 || c.max_pending < 1) abort();
      nm::JobView v{"tenant", "key", "42", "effect", {{"kind", "k"}}};
      bool bad = false;
      std::string s = nm::expand(c.subject, v, true, &bad);
      if (bad || !nm::valid_publish_subject(s)) abort();
      v = nm::JobView{"", "", "1", "e", wf::json::object()};
      s = nm::expand(c.subject, v, true, &bad);
      if (bad || !nm::valid_publish_subject(s)) abort();  // empty values become "_"
      for (const auto &h : c.headers)
        if (h.first.empty() || !nm::valid_header_value(nm::expand(h.second, v, false))) abort();
    } else {
      nm::ConsumerConfig c = nm::decode_consumer(doc);
      if (c.stream.empty() || c.durable.empty() || c.stream.find('.') != std::string::npos ||
          c.durable.find('.') != std::string::npos)
        abort();
      if (c.batch < 1 || c.batch > 10000 || c.ack_wait_ms < 100 || c.fetch_wait_ms < 10) abort();
      if (c.event_type.kind == nm::Source::None) abort();
      if (c.id_header.empty()) abort();
    }
  } catch (const wf::Error &e) {
    check_code(e);
  }
  return 0;
}
