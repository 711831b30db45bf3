// The pure half of the NATS providers: configuration decoding, templates and
// the inbound message-to-event mapping (no server involved).
#include "providers/nats_map.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "util.h"

namespace {

using nlohmann::json;
using namespace wf::prov::natsmap;

ConsumerConfig consumer(json extra = json::object()) {
  json doc = {{"type", "nats_consumer"},
              {"url", "nats://127.0.0.1:4222"},
              {"stream", "EV"},
              {"durable", "d"},
              {"event_type", "header:Wf-Type"}};
  doc.update(extra);
  return decode_consumer(doc);
}

TEST(NatsMap, TemplatesExpandJobFields) {
  json doc = {{"type", "nats"},
              {"url", "nats://a:1,nats://b:2"},
              {"subject", "cmd.{tenant}.{meta.kind}"},
              {"headers", {{"K", "{key}/{id}/{effect}"}}},
              {"timeout_ms", 1234},
              {"max_attempts", 3}};
  PublisherConfig c = decode_publisher(doc);
  EXPECT_EQ(1234, c.ack_timeout_ms);
  JobView v{"t1", "", "42", "pub", {{"kind", "charge"}}};
  EXPECT_EQ("cmd.t1.charge", expand(c.subject, v, true));
  EXPECT_EQ("42/42/pub", expand(c.headers[0].second, v, false));  // {key} falls back to the id
  v.tenant = "";
  v.metadata = json::object();
  EXPECT_EQ("cmd._._", expand(c.subject, v, true));  // empty values never make empty tokens
  v.tenant = "a.b";                                  // would add a token
  bool bad = false;
  expand(c.subject, v, true, &bad);
  EXPECT_TRUE(bad);
}

TEST(NatsMap, SubjectsAndHeaderValues) {
  EXPECT_TRUE(valid_publish_subject("a.b.c"));
  for (const char *bad : {"", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\tb"})
    EXPECT_FALSE(valid_publish_subject(bad)) << bad;
  EXPECT_TRUE(valid_header_value("x y"));
  EXPECT_FALSE(valid_header_value("x\r\ny"));
}

TEST(NatsMap, ConfigErrorsNameTheKey) {
  auto err = [](json doc) -> std::string {
    try {
      if (doc.value("type", "") == "nats")
        decode_publisher(doc);
      else
        decode_consumer(doc);
    } catch (const wf::Error &e) {
      EXPECT_EQ(WF_EINVAL, e.code());
      return e.what();
    }
    return "";
  };
  EXPECT_NE(std::string::npos, err({{"type", "nats"}, {"url", "nats://x:1"}}).find("\"subject\""));
  EXPECT_NE(
      std::string::npos,
      err({{"type", "nats"}, {"url", "nats://x:1"}, {"subject", "a"}, {"zz", 1}}).find("\"zz\""));
  EXPECT_NE(std::string::npos, err({{"type", "nats_consumer"},
                                    {"url", "nats://x:1"},
                                    {"stream", "S"},
                                    {"durable", "d"},
                                    {"event_type", "token:x"}})
                                   .find("\"event_type\""));
  EXPECT_NE(std::string::npos, err({{"type", "nats_consumer"},
                                    {"url", "nats://x:1"},
                                    {"stream", "S"},
                                    {"durable", "d.x"},
                                    {"event_type", "header:T"}})
                                   .find("\"durable\""));
  EXPECT_EQ("", err({{"type", "nats_consumer"},
                     {"url", "nats://x:1"},
                     {"stream", "S"},
                     {"durable", "d"},
                     {"event_type", "const:evt"},
                     {"circuit", {{"failure_ratio", 0.5}}}}));
}

TEST(NatsMap, MessageBecomesEvent) {
  ConsumerConfig c = consumer({{"tenant", "token:1"}, {"correlation", "token:-1"}});
  InMsg m;
  m.subject = "ev.acme.o-17";
  m.headers = {{"Wf-Type", "order.placed"}, {"Nats-Msg-Id", "abc"}, {"traceparent", "00-x"}};
  m.data = R"({"total":5})";
  m.stream = "EV";
  m.stream_seq = 9;
  Mapped r = map_message(c, m);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(json({{"event_id", "abc"},
                  {"type", "order.placed"},
                  {"tenant", "acme"},
                  {"correlation_id", "o-17"},
                  {"payload", {{"total", 5}}},
                  {"traceparent", "00-x"}}),
            r.event);
}

TEST(NatsMap, EventIdFallsBackToStreamSequence) {
  ConsumerConfig c = consumer({{"id_header", "Event-Id"}});
  InMsg m;
  m.subject = "ev.x";
  m.headers = {{"wf-type", "t"},
               {"Nats-Msg-Id", "ignored"}};  // header names match case-insensitively
  m.stream = "EV";
  m.stream_seq = 12;
  Mapped r = map_message(c, m);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ("nats:EV:12", r.event["event_id"]);
  EXPECT_TRUE(r.event["payload"].is_null());
  m.headers.emplace_back("Event-Id", "e1");
  EXPECT_EQ("e1", map_message(c, m).event["event_id"]);
  m.headers.pop_back();
  m.stream_seq = 0;
  EXPECT_FALSE(map_message(c, m).ok);
}

TEST(NatsMap, UnmappableMessages) {
  ConsumerConfig c = consumer({{"correlation", "token:5"}});
  InMsg m;
  m.subject = "ev.x";
  m.headers = {{"Wf-Type", "t"}, {"Nats-Msg-Id", "1"}};
  EXPECT_NE(std::string::npos, map_message(c, m).error.find("correlation"));
  c = consumer();
  m.data = "not json";
  EXPECT_NE(std::string::npos, map_message(c, m).error.find("payload"));
  m.data = "{}";
  m.headers = {{"Nats-Msg-Id", "1"}};
  EXPECT_NE(std::string::npos, map_message(c, m).error.find("event_type"));
}

}  // namespace
