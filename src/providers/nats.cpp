// NATS JetStream providers (docs/providers.md, "NATS JetStream";
// docs/scale-out.md):
//  - "nats": an effect that publishes each job's payload to a subject with
//    Nats-Msg-Id = the job's key (else its id) and completes the job on the
//    PubAck;
//  - "nats_consumer": a durable pull consumer whose messages become events
//    (wf_submit_async), each message acked once its event is committed.
//
// Threads. The libuv adapter that libnats ships (adapters/libuv.h) moves only
// the socket reads and writes onto a loop; PubAcks and subscription messages
// are still delivered on libnats' own threads, reconnects and the async
// publish timeouts run on its timer thread, and a pull consumer's Fetch is a
// blocking call. It would save no thread and would put libnats' locking on
// the engine's loop, so these providers use libnats' threads instead:
//  - dispatch (loop thread) only builds the message and calls
//    js_PublishMsgAsync, which queues it on the connection and returns; the
//    PubAck (or its timeout, MaxWait = timeout_ms) arrives on a libnats
//    thread, which completes or retries the job (allowed from any thread).
//  - each consumer runs one thread of its own: connect, Fetch a batch,
//    wf_submit_async each message; the engine's notifier thread acks the
//    message when its event is committed (or already was: WF_EEXIST).
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "providers/nats_map.h"
#include "providers/provider.h"
#include "util.h"

namespace wf::prov {

namespace {

using natsmap::ConsumerConfig;
using natsmap::PublisherConfig;

std::string status_text(natsStatus s) {
  const char *t = natsStatus_GetText(s);
  return t ? t : "unknown status";
}

// With a "connected" callback, a failed first connect does not block:
// libnats keeps trying in the background (without one it retries inside
// natsConnection_Connect).
void on_connected(natsConnection *, void *) {}

// Options shared by both providers. Returns nullptr on failure (`err` set).
natsOptions *make_options(const std::string &url, const std::string &name, int64_t connect_ms,
                          bool retry_connect, std::string &err) {
  natsOptions *o = nullptr;
  natsStatus s = natsOptions_Create(&o);
  if (s == NATS_OK) s = natsOptions_SetServers(o, nullptr, 0);
  // SetURL accepts a comma-separated list.
  if (s == NATS_OK) s = natsOptions_SetURL(o, url.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, connect_ms);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
  if (s == NATS_OK && !name.empty()) s = natsOptions_SetName(o, name.c_str());
  if (s == NATS_OK && retry_connect)
    s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, nullptr);
  if (s != NATS_OK) {
    err = status_text(s);
    natsOptions_Destroy(o);
    return nullptr;
  }
  return o;
}

// ------------------------------------------------------------- publisher

// State the PubAck handler reaches. Kept alive after the provider is gone
// (see ~NatsPublisher): libnats may still run a handler while the connection
// closes.
struct PubCore {
  std::mutex mu;
  std::unordered_map<natsMsg *, wf_job *> pending;  // published, PubAck not yet in
  bool closed = false;
};

std::mutex g_retired_mu;
std::vector<std::shared_ptr<PubCore>> &retired() {
  static std::vector<std::shared_ptr<PubCore>> v;
  return v;
}

void on_pub_ack(jsCtx *, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  auto *core = static_cast<PubCore *>(closure);
  wf_job *job = nullptr;
  {
    std::lock_guard<std::mutex> g(core->mu);
    auto it = core->pending.find(msg);
    if (it != core->pending.end()) {
      job = it->second;
      core->pending.erase(it);
    }
  }
  if (job) {
    if (pa) {
      nlohmann::json r = {{"stream", pa->Stream ? pa->Stream : ""},
                          {"seq", pa->Sequence},
                          {"duplicate", pa->Duplicate}};
      wf_job_complete(job, r.dump().c_str());
    } else {
      std::string e = "nats publish: ";
      if (pae && pae->ErrText && *pae->ErrText)
        e += pae->ErrText;
      else
        e += status_text(pae ? pae->Err : NATS_ERR);
      wf_job_retry(job, e.c_str(), -1);
    }
  }
  natsMsg_Destroy(msg);
}

class NatsPublisher : public Provider {
 public:
  NatsPublisher(Host &host, const std::string &effect, PublisherConfig cfg)
      : cfg_(std::move(cfg)), core_(std::make_shared<PubCore>()) {
    std::string err;
    natsOptions *o = make_options(cfg_.url, cfg_.name, cfg_.connect_timeout_ms, true, err);
    if (!o) fail(WF_EINVAL, "nats config: \"url\": " + err);
    natsStatus s = natsConnection_Connect(&nc_, o);
    natsOptions_Destroy(o);
    // Not yet connected: libnats keeps trying in the background; publishes
    // meanwhile are buffered or time out (and the job is retried).
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
      natsConnection_Destroy(nc_);
      fail(WF_EINVAL, "nats config: \"url\": cannot connect: " + status_text(s));
    }
    if (s == NATS_NOT_YET_CONNECTED)
      host.log(WF_LOG_WARN, "nats: server not reachable; connecting in the background",
               {{"effect", effect}, {"url", cfg_.url}});
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = cfg_.ack_timeout_ms;
    jo.PublishAsync.MaxPending = cfg_.max_pending;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = core_.get();
    // Never hold the loop: with max_pending PubAcks outstanding a publish
    // waits at most 1 ms, then the job is retried.
    jo.PublishAsync.StallWait = 1;
    s = natsConnection_JetStream(&js_, nc_, &jo);
    if (s != NATS_OK) {
      natsConnection_Destroy(nc_);
      fail(WF_EINTERNAL, "nats: cannot create a JetStream context: " + status_text(s));
    }
  }

  ~NatsPublisher() override {
    // Stop the connection first: no new PubAck after this (one already
    // running finds its job gone or completes it).
    natsConnection_Close(nc_);
    std::unordered_map<natsMsg *, wf_job *> left;
    {
      std::lock_guard<std::mutex> g(core_->mu);
      core_->closed = true;
      left.swap(core_->pending);
    }
    for (auto &kv : left) wf_job_retry(kv.second, "nats publisher closed before the PubAck", -1);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
    std::lock_guard<std::mutex> g(g_retired_mu);
    retired().push_back(core_);  // a libnats thread may still hold the pointer
  }

  void attach(uv_loop_s *) override {}
  void detach() override {}

  void dispatch(wf_job *job) override {
    natsmap::JobView v;
    v.tenant = wf_job_tenant(job);
    v.key = wf_job_key(job);
    v.id = wf_job_id(job);
    v.effect = wf_job_effect(job);
    const char *meta = wf_job_metadata(job);
    v.metadata = nlohmann::json::parse(meta ? meta : "{}", nullptr, false);
    if (v.metadata.is_discarded() || !v.metadata.is_object()) v.metadata = nlohmann::json::object();
    bool bad = false;
    std::string subject = natsmap::expand(cfg_.subject, v, true, &bad);
    if (bad || !natsmap::valid_publish_subject(subject)) {
      wf_job_fail(job, ("nats: subject \"" + sanitize_utf8(subject, 256) +
                        "\" is not valid (a tenant, key or metadata value holds '.', '*', '>' "
                        "or whitespace)")
                           .c_str());
      return;
    }
    size_t len = 0;
    const char *payload = wf_job_payload(job, &len);
    natsMsg *m = nullptr;
    natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, payload, static_cast<int>(len));
    std::string msg_id = v.key.empty() ? v.id : v.key;
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id.c_str());
    for (const char *th : {"traceparent", "tracestate"}) {
      auto it = v.metadata.find(th);
      if (s == NATS_OK && it != v.metadata.end() && it->is_string()) {
        std::string val = it->get<std::string>();
        if (natsmap::valid_header_value(val)) s = natsMsgHeader_Set(m, th, val.c_str());
      }
    }
    for (const auto &[name, tmpl] : cfg_.headers) {
      if (s != NATS_OK) break;
      std::string val = natsmap::expand(tmpl, v, false);
      if (!natsmap::valid_header_value(val)) {
        natsMsg_Destroy(m);
        wf_job_fail(job, ("nats: header " + name + " would hold CR, LF or NUL").c_str());
        return;
      }
      s = natsMsgHeader_Set(m, name.c_str(), val.c_str());
    }
    if (s != NATS_OK) {
      natsMsg_Destroy(m);
      wf_job_retry(job, ("nats: cannot build the message: " + status_text(s)).c_str(), -1);
      return;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = cfg_.ack_timeout_ms;
    if (!cfg_.expect_stream.empty()) po.ExpectStream = cfg_.expect_stream.c_str();
    natsMsg *key = m;
    {
      std::lock_guard<std::mutex> g(core_->mu);
      core_->pending[key] = job;
    }
    s = js_PublishMsgAsync(js_, &m, &po);
    if (s != NATS_OK) {
      bool mine = false;
      {
        std::lock_guard<std::mutex> g(core_->mu);
        mine = core_->pending.erase(key) > 0;
      }
      natsMsg_Destroy(m);  // no-op when the library took it
      std::string e = "nats publish: " + status_text(s);
      if (mine) {
        if (s == NATS_MAX_PAYLOAD)
          wf_job_fail(job, e.c_str());
        else
          wf_job_retry(job, e.c_str(), -1);
      }
    }
  }

 private:
  PublisherConfig cfg_;
  std::shared_ptr<PubCore> core_;
  natsConnection *nc_ = nullptr;
  jsCtx *js_ = nullptr;
};

// -------------------------------------------------------------- consumer

struct ConCore {
  Host *host = nullptr;
  wf_engine *engine = nullptr;
  std::string effect;
  ConsumerConfig cfg;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  natsConnection *nc = nullptr;
  jsCtx *js = nullptr;
  natsSubscription *sub = nullptr;

  ~ConCore() {
    natsSubscription_Destroy(sub);  // keeps the durable consumer on the server
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
};

// One message handed to wf_submit_async: acked from the notifier thread.
struct Inflight {
  std::shared_ptr<ConCore> core;
  natsMsg *msg;
};

void on_submitted(void *user, int status, const char *) {
  auto *f = static_cast<Inflight *>(user);
  if (status == WF_OK || status == WF_EEXIST)
    natsMsg_Ack(f->msg, nullptr);  // committed (or a redelivery of a committed event)
  else
    natsMsg_NakWithDelay(f->msg, 1000, nullptr);  // the write failed: deliver it again
  natsMsg_Destroy(f->msg);
  delete f;
}

natsmap::InMsg view_of(natsMsg *m) {
  natsmap::InMsg in;
  const char *subj = natsMsg_GetSubject(m);
  in.subject = subj ? subj : "";
  const char *data = natsMsg_GetData(m);
  int len = natsMsg_GetDataLength(m);
  if (data && len > 0) in.data.assign(data, static_cast<size_t>(len));
  const char **keys = nullptr;
  int n = 0;
  if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
    for (int i = 0; i < n; ++i) {
      const char *v = nullptr;
      if (natsMsgHeader_Get(m, keys[i], &v) == NATS_OK && v) in.headers.emplace_back(keys[i], v);
    }
    free(static_cast<void *>(keys));
  }
  jsMsgMetaData *md = nullptr;
  if (natsMsg_GetMetaData(&md, m) == NATS_OK && md) {
    in.stream = md->Stream ? md->Stream : "";
    in.stream_seq = md->Sequence.Stream;
    jsMsgMetaData_Destroy(md);
  }
  return in;
}

void handle(const std::shared_ptr<ConCore> &c, natsMsg *m) {
  natsmap::Mapped mp = natsmap::map_message(c->cfg, view_of(m));
  if (!mp.ok) {
    c->host->log(WF_LOG_WARN, "nats_consumer: message cannot become an event; terminated",
                 {{"effect", c->effect}, {"error", mp.error}});
    natsMsg_Term(m, nullptr);
    natsMsg_Destroy(m);
    return;
  }
  std::string doc = mp.event.dump();
  auto *f = new Inflight{c, m};
  int rc = wf_submit_async(c->engine, doc.c_str(), on_submitted, f);
  if (rc == WF_OK) return;
  if (rc == WF_EINVAL || rc == WF_ETOOBIG) {
    c->host->log(WF_LOG_WARN, "nats_consumer: event refused by the engine; message terminated",
                 {{"effect", c->effect}, {"error", wf_last_error()}});
    natsMsg_Term(m, nullptr);
  } else {
    natsMsg_Nak(m, nullptr);  // closing or busy: another engine (or we, later) takes it
  }
  natsMsg_Destroy(m);
  delete f;
}

// Waits `ms` or until stopped; true if stopped.
bool pause(ConCore &c, int64_t ms) {
  std::unique_lock<std::mutex> g(c.mu);
  return c.cv.wait_for(g, std::chrono::milliseconds(ms), [&] { return c.stop; });
}

bool stopped(ConCore &c) {
  std::lock_guard<std::mutex> g(c.mu);
  return c.stop;
}

// Connects and binds the pull subscription; false (logged) on failure.
bool bind(ConCore &c) {
  std::string err;
  if (!c.nc) {
    natsOptions *o = make_options(c.cfg.url, c.cfg.name, c.cfg.connect_timeout_ms, false, err);
    if (!o) return false;
    natsConnection *nc = nullptr;
    natsStatus s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
      c.host->log(WF_LOG_WARN, "nats_consumer: cannot connect; retrying",
                  {{"effect", c.effect}, {"error", status_text(s)}});
      return false;
    }
    std::lock_guard<std::mutex> g(c.mu);
    c.nc = nc;
    if (c.stop) return false;
  }
  if (!c.js && natsConnection_JetStream(&c.js, c.nc, nullptr) != NATS_OK) return false;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = c.cfg.stream.c_str();
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.AckWait = c.cfg.ack_wait_ms * 1000000;
  if (c.cfg.max_deliver > 0) so.Config.MaxDeliver = c.cfg.max_deliver;
  if (c.cfg.max_ack_pending > 0) so.Config.MaxAckPending = c.cfg.max_ack_pending;
  jsErrCode je = static_cast<jsErrCode>(0);
  natsSubscription *sub = nullptr;
  natsStatus s = js_PullSubscribe(&sub, c.js, c.cfg.subject.empty() ? ">" : c.cfg.subject.c_str(),
                                  c.cfg.durable.c_str(), nullptr, &so, &je);
  if (s != NATS_OK) {
    const char *le = nats_GetLastError(nullptr);
    c.host->log(WF_LOG_WARN, "nats_consumer: cannot bind the durable consumer; retrying",
                {{"effect", c.effect},
                 {"stream", c.cfg.stream},
                 {"durable", c.cfg.durable},
                 {"error", status_text(s) + (le ? std::string(": ") + le : "")},
                 {"js_error", static_cast<int>(je)}});
    return false;
  }
  c.sub = sub;
  return true;
}

void run_consumer(const std::shared_ptr<ConCore> &c) {  // std::thread holds the copy
  int64_t backoff = 100;
  while (!stopped(*c)) {
    if (!c->sub && !bind(*c)) {
      if (pause(*c, backoff)) break;
      backoff = std::min<int64_t>(backoff * 2, 5000);
      continue;
    }
    backoff = 100;
    natsMsgList list{};
    jsErrCode je = static_cast<jsErrCode>(0);
    natsStatus s = natsSubscription_Fetch(&list, c->sub, c->cfg.batch, c->cfg.fetch_wait_ms, &je);
    if (s == NATS_OK) {
      for (int i = 0; i < list.Count; ++i) {
        natsMsg *m = list.Msgs[i];
        list.Msgs[i] = nullptr;  // ownership moves to handle()
        handle(c, m);
      }
      natsMsgList_Destroy(&list);
    } else if (s == NATS_TIMEOUT) {
      continue;  // nothing to fetch
    } else if (s == NATS_CONNECTION_CLOSED || stopped(*c)) {
      break;
    } else {
      // Disconnected, reconnecting, or the consumer was deleted: wait and go on.
      if (pause(*c, 200)) break;
    }
  }
}

class NatsConsumer : public Provider {
 public:
  NatsConsumer(Host &host, std::string effect, ConsumerConfig cfg)
      : core_(std::make_shared<ConCore>()) {
    core_->host = &host;
    core_->engine = host.engine();
    core_->effect = std::move(effect);
    core_->cfg = std::move(cfg);
  }
  ~NatsConsumer() override { stop(); }

  void attach(uv_loop_s *) override {
    if (thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> g(core_->mu);
      core_->stop = false;
    }
    thread_ = std::thread(run_consumer, core_);
  }
  void detach() override { stop(); }
  // A consumer has no jobs (the effect name only names it).
  void dispatch(wf_job *job) override { wf_job_fail(job, "a nats_consumer effect takes no jobs"); }

 private:
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> g(core_->mu);
      core_->stop = true;
      // Wakes a Fetch in progress. Acks of events committed later fail
      // harmlessly: the server redelivers after ack_wait and the engine
      // deduplicates the event id.
      if (core_->nc) natsConnection_Close(core_->nc);
    }
    core_->cv.notify_all();
    thread_.join();
  }

  std::shared_ptr<ConCore> core_;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Provider> make_nats(Host &host, const std::string &effect,
                                    const nlohmann::json &config) {
  return std::make_unique<NatsPublisher>(host, effect, natsmap::decode_publisher(config));
}

std::unique_ptr<Provider> make_nats_consumer(Host &host, const std::string &effect,
                                             const nlohmann::json &config) {
  return std::make_unique<NatsConsumer>(host, effect, natsmap::decode_consumer(config));
}

}  // namespace wf::prov
