// failpoint: named crash points for kill tests (built only with
// -DWF_FAILPOINTS=ON). WF_FAILPOINTS="name=N[,name=N]" in the environment
// makes the N-th hit of `name` in this process SIGKILL itself, so tests can
// crash at an exact commit boundary.
#pragma once

namespace wf {

#ifdef WF_FAILPOINTS
void failpoint_hit(const char *name);
#define WF_FAILPOINT(name) ::wf::failpoint_hit(name)
#else
#define WF_FAILPOINT(name) ((void)0)
#endif

}  // namespace wf
