// The pure half of the NATS JetStream providers (providers/nats.cpp): the
// configuration decoders, the subject/header templates of the outbound
// publisher and the inbound message-to-event mapping. No I/O, no libnats:
// unit tests and fuzz targets call these directly.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace wf::prov::natsmap {

using json = nlohmann::json;

// A template: literal text with {tenant} {key} {id} {effect} {meta.NAME}.
struct Template {
  struct Part {
    enum Kind { Literal, Tenant, Key, Id, Effect, Meta } kind = Literal;
    std::string text;  // the literal, or NAME for Meta
  };
  std::vector<Part> parts;
};

// `{"type":"nats", ...}` (docs/providers.md, "NATS JetStream").
struct PublisherConfig {
  std::string url;
  Template subject;
  std::vector<std::pair<std::string, Template>> headers;
  int64_t ack_timeout_ms = 5000;  // the PubAck wait: "timeout_ms" (policy key) or 5000
  int64_t connect_timeout_ms = 2000;
  int64_t max_pending = 4096;  // async publishes awaiting a PubAck per connection
  std::string expect_stream;   // "stream": the PubAck must come from this stream
  std::string name;            // connection name
};

// Where a field of an inbound event comes from.
struct Source {
  enum Kind { None, Header, Token, Const } kind = None;
  std::string text;  // header name or constant
  int token = 0;     // subject token index (0-based; negative counts from the end)
};

// `{"type":"nats_consumer", ...}`.
struct ConsumerConfig {
  std::string url, stream, durable, subject;
  Source event_type, correlation, tenant;
  std::string id_header = "Nats-Msg-Id";
  int batch = 64;
  int64_t ack_wait_ms = 30000;
  int64_t fetch_wait_ms = 500;
  int64_t max_deliver = -1;      // -1: server default (unlimited)
  int64_t max_ack_pending = -1;  // -1: server default
  int64_t connect_timeout_ms = 2000;
  std::string name;
};

// Decoders of the whole registration document (the policy keys are accepted
// and ignored). Throw wf::Error(WF_EINVAL) naming the key.
PublisherConfig decode_publisher(const json &doc);
ConsumerConfig decode_consumer(const json &doc);
Template parse_template(const std::string &text, const char *key);
Source parse_source(const json &v, const char *key);

// What a template sees of a job.
struct JobView {
  std::string tenant, key, id, effect;
  json metadata = json::object();
};
// Expands a template. In a subject (`subject` true) an empty value becomes
// "_" so a token is never empty, and a value holding '.', '*', '>' or
// whitespace (it would change the subject's tokens) sets *bad.
std::string expand(const Template &t, const JobView &j, bool subject, bool *bad = nullptr);
// A subject a message can be published to: tokens separated by '.', none
// empty, no wildcards ('*', '>') and no whitespace or control characters.
bool valid_publish_subject(const std::string &s);
// A header value that can be sent: no CR, LF or NUL.
bool valid_header_value(const std::string &s);

// An inbound JetStream message as the mapping sees it.
struct InMsg {
  std::string subject;
  std::vector<std::pair<std::string, std::string>> headers;  // first value of each
  std::string data;
  std::string stream;
  uint64_t stream_seq = 0;
};
struct Mapped {
  bool ok = false;
  std::string error;  // when !ok: why the message cannot become an event (it is terminated)
  json event;         // when ok: the wf_submit document
};
// The event a message becomes: event_id from the id header, else
// "nats:<stream>:<stream sequence>" (stable across redeliveries); type,
// correlation_id and tenant from their sources; payload = the data as JSON
// (empty data: null); traceparent from the header of that name.
Mapped map_message(const ConsumerConfig &c, const InMsg &m);

// The header `name` (exact match first, then ASCII case-insensitive), or nullptr.
const std::string *find_header(const InMsg &m, const std::string &name);

}  // namespace wf::prov::natsmap
