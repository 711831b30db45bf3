// The inbound message-to-event mapping. Input: one byte choosing the
// consumer configuration, then "subject\n", header lines "Name: value\n" up
// to an empty line, then the data. Never crashes; a mapped event has a
// non-empty event_id and type, its event_id comes from the id header or the
// stream sequence, and the engine's event decoder accepts the document or
// rejects it only with WF_EINVAL / WF_ETOOBIG.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine.h"
#include "fuzz_common.h"
#include "providers/nats_map.h"

using wffuzz::check_code;
namespace nm = wf::prov::natsmap;

namespace {

nm::ConsumerConfig config(uint8_t which) {
  wf::json doc = {{"type", "nats_consumer"},
                  {"url", "nats://127.0.0.1:4222"},
                  {"stream", "EV"},
                  {"durable", "d"}};
  switch (which % 3) {
    case 0:
      doc["event_type"] = "header:Wf-Type";
      doc["correlation"] = "header:Wf-Correlation";
      break;
    case 1:
      doc["event_type"] = "token:-1";
      doc["tenant"] = "token:1";
      doc["correlation"] = "token:2";
      doc["id_header"] = "Event-Id";
      break;
    default:
      doc["event_type"] = "const:evt";
      doc["tenant"] = "header:Tenant";
      break;
  }
  return nm::decode_consumer(doc);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  nm::ConsumerConfig c = config(data[0]);
  std::string in(reinterpret_cast<const char *>(data) + 1, size - 1);
  nm::InMsg m;
  size_t pos = in.find('\n');
  m.subject = in.substr(0, pos);
  while (pos != std::string::npos) {
    size_t start = pos + 1;
    pos = in.find('\n', start);
    std::string line = in.substr(start, pos == std::string::npos ? std::string::npos : pos - start);
    if (line.empty() || pos == std::string::npos) {
      m.data = pos == std::string::npos ? line : in.substr(pos + 1);
      break;
    }
    size_t colon = line.find(": ");
    if (colon == std::string::npos) continue;
    m.headers.emplace_back(line.substr(0, colon), line.substr(colon + 2));
  }
  m.stream = "EV";
  m.stream_seq = size;
  nm::Mapped r = nm::map_message(c, m);
  if (!r.ok) {
    if (r.error.empty()) abort();
    return 0;
  }
  const wf::json &ev = r.event;
  if (!ev.is_object() || !ev.contains("payload")) abort();
  std::string id = ev.value("event_id", "");
  if (id.empty() || ev.value("type", "").empty()) abort();
  const std::string *hid = nm::find_header(m, c.id_header);
  if (hid && !hid->empty() ? id != *hid : id != "nats:EV:" + std::to_string(size)) abort();
  const wf::Options opt = wffuzz::options();
  try {
    wf::json doc = wf::parse_json(ev.dump(), opt.limits, "event", 1 << 24);
    wf::decode_event(doc, opt, wffuzz::kNow, "event");
  } catch (const wf::Error &e) {
    check_code(e);
  }
  return 0;
}
