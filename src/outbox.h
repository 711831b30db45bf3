// Operations behind the C API that read or write the outbox. Each throws
// wf::Error on failure; capi.cpp maps that to a status and wf_last_error().
#pragma once

#include <string>

#include "engine.h"

namespace wf {

// Returns true when the key already existed (*id is then the holder's id).
bool enqueue(Engine &e, const char *job_json, std::string *id);
std::string enqueue_batch(Engine &e, const char *jobs_json);
void cancel(Engine &e, const char *tenant, const char *id_or_key);
// Pipelined writes (async.cpp): validate, queue, return; `cb` gets the result.
void enqueue_async(Engine &e, const char *job_json, wf_done_fn cb, void *user);
void submit_event_async(Engine &e, const char *event_json, wf_done_fn cb, void *user);
// Test hook: an async job with this priority (non-zero) fails in the writer.
extern std::atomic<int64_t> g_fail_async_priority;
// Throws the injected failure when `j` has that priority (writer side).
void fail_if_injected(const NewJob &j);

HostTx *tx_begin(Engine &e);
std::string tx_exec(HostTx *tx, const char *sql, const char *params_json, bool want_rows);
bool tx_enqueue(HostTx *tx, const char *job_json, std::string *id);
int tx_commit(HostTx *tx);  // releases tx; status, last error set on failure
void tx_rollback(HostTx *tx);
void tx_merge(HostTx *tx, const WriteCtx &w);
// Start of every wf_tx_* call but commit/rollback: checks the transaction is
// usable (WF_EFORKED, WF_ESTATE after tx_timeout_ms or a fatal failure),
// records the calling thread, and holds tx->mu for the call.
std::unique_lock<std::mutex> tx_enter(HostTx *tx, const char *what);
void check_writable(Engine &e);
int submit_or_raise(Engine &e, std::function<void(WriteCtx &)> fn, bool inserts_only = false,
                    bool one_id = false);

// Schedules (sched.cpp).
void schedule(Engine &e, const char *schedule_json);
void unschedule(Engine &e, const char *tenant, const char *key);
void tx_schedule(HostTx *tx, const char *schedule_json);

// Events and sagas (saga.cpp).
bool submit_event(Engine &e, const char *event_json);  // false: duplicate
bool tx_submit(HostTx *tx, const char *event_json);
void register_saga(Engine &e, const char *saga, const char *spec_json, wf_saga_fn fn, void *user);
std::string saga_get(Engine &e, const char *tenant, const char *saga, const char *corr);
std::string saga_replay(Engine &e, const char *tenant, const char *saga, const char *corr,
                        const char *options_json);
json saga_stats(Engine &e, Db &db, int64_t now, const std::optional<std::string> &tenant);

std::string dead_list(Engine &e, const char *filter_json);
int64_t dead_requeue(Engine &e, const char *filter_json);
int64_t dead_purge(Engine &e, const char *filter_json);
// by_tenant: false leaves outbox.by_tenant empty (wf_metrics does not use it).
json stats(Engine &e, const char *filter_json, bool by_tenant = true);
std::string metrics(Engine &e);

// Read API (read.cpp): JSON listings on the API read connection.
std::string jobs_list(Engine &e, const char *filter_json);
std::string job_get(Engine &e, const char *tenant, const char *id_or_key);
std::string schedules_list(Engine &e, const char *filter_json);
std::string sagas_list(Engine &e, const char *filter_json);
std::string saga_show(Engine &e, const char *tenant, const char *saga, const char *corr);
std::string events_list(Engine &e, const char *filter_json);
std::string engines_list(Engine &e);
std::string check(Engine &e, const char *options_json);
void backup(Engine &e, const char *dest_path);

// Lifecycle (lifecycle.cpp).
void start(Engine &e);
int drain(Engine &e, int64_t timeout_ms, bool for_close = false);
void close_started(Engine &e);  // wf_close began: a wf_drain waiting elsewhere returns
void close_engine(Engine *e);
void sync(Engine &e);
// Effect registration (lifecycle.cpp): the name check and the insertion into
// the registry, shared by wf_effect_register and wf_effect_register_builtin.
void check_effect_name(const Engine &e, const char *effect, const char *what);
void install_effect(Engine &e, const std::shared_ptr<EffectState> &st, const char *what);
void register_effect(Engine &e, const char *effect, const char *policy_json, wf_effect_fn fn,
                     void *user);
// Records `effect` as served by this boot (wf_boot_effects, for wfctl stuck)
// and removes the rows of boots no longer in wf_boots. With `capped` (it has
// a tenant_concurrency), marks it in wf_capped_effects (lease::mark_capped).
void record_effect(Engine &e, const std::string &effect, bool capped);
// Records the circuit breaker of `effect` on this boot's wf_boot_effects row:
// open until `open_until` (ms), or closed when `open_until` is 0. Not awaited.
void record_circuit(Engine &e, const std::string &effect, int64_t open_until);
// wf_effect_register_builtin (providers/builtin.cpp); `handle` is the public
// handle given to the provider.
void register_builtin(Engine &e, wf_engine *handle, const char *effect, const char *config_json);

}  // namespace wf
