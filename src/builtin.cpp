// The engine's side of built-in providers (src/providers/): registration,
// the Host a provider sees, attaching providers to the loop and detaching
// them when it stops.
#include <uv.h>

#include <algorithm>

#include "outbox.h"
#include "providers/provider.h"

namespace wf {

BuiltinSlot::BuiltinSlot() = default;
BuiltinSlot::~BuiltinSlot() = default;

namespace {

class EngineHost : public prov::Host {
 public:
  EngineHost(Engine &e, wf_engine *handle) : e_(e), handle_(handle) {}
  wf_engine *engine() const override { return handle_; }
  void log(int level, const std::string &msg, const nlohmann::json &fields) override {
    e_.log(level, msg, fields);
  }

 private:
  Engine &e_;
  wf_engine *handle_;
};

void attach_slot(Engine &e, BuiltinSlot &s) {
  if (s.attached || !e.loop) return;
  s.provider->attach(e.loop);
  s.attached = true;
}

// The effect callback of every built-in provider (on the loop thread).
void builtin_dispatch(void *user, wf_job *job) {
  auto *s = static_cast<BuiltinSlot *>(user);
  attach_slot(*s->engine, *s);
  s->provider->dispatch(job);
}

std::vector<std::shared_ptr<BuiltinSlot>> slots(Engine &e) {
  std::vector<std::shared_ptr<BuiltinSlot>> v;
  std::shared_lock<std::shared_mutex> g(e.reg_mu);
  for (auto &kv : e.effects)
    if (kv.second->builtin) v.push_back(kv.second->builtin);
  return v;
}

}  // namespace

void Engine::attach_providers() {
  if (stopping) return;
  for (auto &s : slots(*this)) {
    try {
      attach_slot(*this, *s);
    } catch (const std::exception &ex) {
      log(WF_LOG_ERROR, "built-in provider failed to attach", json{{"error", ex.what()}});
    }
  }
}

void Engine::detach_providers() {
  for (auto &s : slots(*this)) {
    if (!s->attached) continue;
    s->attached = false;
    try {
      s->provider->detach();
    } catch (const std::exception &ex) {
      log(WF_LOG_ERROR, "built-in provider failed to detach", json{{"error", ex.what()}});
    }
  }
}

void register_builtin(Engine &e, wf_engine *handle, const char *effect, const char *config_json) {
  const char *what = "wf_effect_register_builtin";
  check_effect_name(e, effect, what);
  if (!config_json || !*config_json) fail(WF_EINVAL, std::string(what) + ": config is NULL");
  json doc = parse_json(config_json, e.opt.limits, "config", 1 << 20);
  if (!doc.is_object()) fail(WF_EINVAL, std::string(what) + ": config must be a JSON object");
  auto t = doc.find("type");
  if (t == doc.end() || !t->is_string())
    fail(WF_EINVAL, std::string(what) + ": config needs \"type\" (a string)");
  std::string type = t->get<std::string>();
  prov::Factory f = prov::find_factory(type);
  if (!f) {
    std::string known;
    for (const auto &k : prov::known_types()) known += (known.empty() ? "" : ", ") + k;
    fail(WF_EUNSUPPORTED, std::string(what) + ": unknown provider type \"" + type +
                              "\" (known: " + (known.empty() ? "none" : known) + ")");
  }
  auto st = std::make_shared<EffectState>();
  st->name = effect;
  st->policy = parse_policy_doc(doc);
  auto slot = std::make_shared<BuiltinSlot>();
  slot->engine = &e;
  slot->host = std::make_unique<EngineHost>(e, handle);
  slot->provider = f(*slot->host, st->name, doc);
  if (!slot->provider) fail(WF_EINTERNAL, std::string(what) + ": provider \"" + type + "\" failed");
  st->fn = builtin_dispatch;
  st->user = slot.get();
  st->builtin = slot;
  install_effect(e, st, what);
}

}  // namespace wf
