// The built-in provider types. A new type adds its factory here.
#include <utility>

#include "providers/provider.h"

namespace wf::prov {

// providers/nats.cpp
std::unique_ptr<Provider> make_nats(Host &, const std::string &, const nlohmann::json &);
std::unique_ptr<Provider> make_nats_consumer(Host &, const std::string &, const nlohmann::json &);
// Factories, one per file in src/providers/.
std::unique_ptr<Provider> make_http(Host &host, const std::string &effect,
                                    const nlohmann::json &config);

namespace {

const std::vector<std::pair<std::string, Factory>> &table() {
  static const std::vector<std::pair<std::string, Factory>> t = {
      {"http", make_http},
      {"nats", make_nats},
      {"nats_consumer", make_nats_consumer},
  };
  return t;
}

}  // namespace

const std::vector<std::string> &policy_keys() {
  static const std::vector<std::string> k = {"timeout_ms",        "max_attempts",       "backoff",
                                             "concurrency",       "tenant_concurrency", "circuit",
                                             "max_interruptions", "abandon_after_ms"};
  return k;
}

Factory find_factory(const std::string &type) {
  for (const auto &[name, f] : table())
    if (name == type) return f;
  return nullptr;
}

std::vector<std::string> known_types() {
  std::vector<std::string> v;
  for (const auto &kv : table()) v.push_back(kv.first);
  return v;
}

}  // namespace wf::prov
