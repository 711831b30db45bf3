#include "failpoint.h"

#ifdef WF_FAILPOINTS
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

namespace wf {

namespace {
std::once_flag g_once;
std::map<std::string, long> g_targets;  // name -> hit that kills
std::map<std::string, std::atomic<long>> g_hits;

void load() {
  const char *spec = std::getenv("WF_FAILPOINTS");
  if (!spec) return;
  std::string s = spec;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t eq = item.find('=');
    if (eq != std::string::npos) {
      g_targets[item.substr(0, eq)] = std::atol(item.c_str() + eq + 1);
      g_hits[item.substr(0, eq)] = 0;
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
}
}  // namespace

void failpoint_hit(const char *name) {
  std::call_once(g_once, load);
  auto it = g_targets.find(name);
  if (it == g_targets.end()) return;
  if (++g_hits[name] == it->second) {
    // Say which point fired on stderr (tests read it), then die like kill -9.
    const char prefix[] = "wfengine failpoint hit: ";
    ssize_t r = write(2, prefix, sizeof prefix - 1);
    r = write(2, name, std::strlen(name));
    r = write(2, "\n", 1);
    (void)r;
    kill(getpid(), SIGKILL);
  }
}

}  // namespace wf
#endif
