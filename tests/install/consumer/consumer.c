/* A minimal program built against an installed wfengine. */
#include <stdio.h>
#include <string.h>
#include <wfengine.h>

int main(int argc, char **argv) {
  wf_engine *e = NULL;
  if (argc < 2 || wf_open(argv[1], NULL, &e) != WF_OK) {
    fprintf(stderr, "open failed: %s\n", wf_last_error());
    return 1;
  }
  char *id = NULL;
  if (wf_enqueue(e, "{\"effect\":\"x\"}", &id) != WF_OK || strcmp(id, "1") != 0) return 1;
  wf_free(id);
  printf("consumer: wfengine %s ok\n", wf_version());
  return wf_close(e) == WF_OK ? 0 : 1;
}
