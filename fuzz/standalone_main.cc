// Replays fuzz inputs without libFuzzer: every file named on the command line,
// or every file in a directory named on it, goes through the target once.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>(s.data()), s.size());
  return 0;
}

int main(int argc, char **argv) {
  int files = 0, errors = 0;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      std::fprintf(stderr, "no such input: %s\n", argv[i]);
      return 1;
    }
    if (S_ISDIR(st.st_mode)) {
      DIR *d = opendir(argv[i]);
      while (struct dirent *ent = readdir(d)) {
        if (ent->d_name[0] == '.') continue;
        errors += run_file(std::string(argv[i]) + "/" + ent->d_name);
        ++files;
      }
      closedir(d);
    } else {
      errors += run_file(argv[i]);
      ++files;
    }
  }
  std::printf("replayed %d inputs\n", files);
  return (errors || files == 0) ? 1 : 0;
}
