// Runs a harness over saved inputs (files, or every file in a directory)
// without libFuzzer, so `make check` replays the committed corpus under g++
// with the sanitizers. Prints how many inputs ran.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "fuzz_input.hpp"

namespace {

int run_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
        return -1;
    }
    std::stringstream bytes;
    bytes << in.rdbuf();
    std::string input = bytes.str();
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
    return 1;
}

int run_path(const std::string& path) {
    struct stat status{};
    if (::stat(path.c_str(), &status) != 0) {
        std::fprintf(stderr, "replay: no such file or directory: %s\n", path.c_str());
        return -1;
    }
    if (!S_ISDIR(status.st_mode)) return run_file(path);
    DIR* directory = ::opendir(path.c_str());
    if (!directory) return -1;
    int count = 0;
    while (const dirent* entry = ::readdir(directory)) {
        if (entry->d_name[0] == '.') continue;
        int ran = run_file(path + "/" + entry->d_name);
        if (ran < 0) {
            count = -1;
            break;
        }
        count += ran;
    }
    ::closedir(directory);
    return count;
}

}  // namespace

int main(int argc, char** argv) {
    int total = 0;
    for (int i = 1; i < argc; ++i) {
        int ran = run_path(argv[i]);
        if (ran < 0) return 1;
        total += ran;
    }
    std::printf("replayed %d inputs\n", total);
    return total > 0 ? 0 : 1;
}
