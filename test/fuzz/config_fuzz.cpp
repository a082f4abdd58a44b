// Config file parser and the value parsers behind it: no crash on any file
// text, and every setting it returns names a line of the file.
#include <string>
#include <vector>

#include "cproxy/config.hpp"
#include "cproxy/policy.hpp"
#include "fuzz_input.hpp"

using namespace cproxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> errors;
    std::vector<Setting> settings = parse_config_text(text, "fuzz.conf", errors);
    for (const std::string& error : errors) fuzz::require(error.rfind("fuzz.conf:", 0) == 0);
    for (const Setting& setting : settings) {
        fuzz::require(setting.from_file && setting.origin.rfind("fuzz.conf:", 0) == 0);
        [[maybe_unused]] auto ranges = parse_address_ranges(setting.value);
        [[maybe_unused]] auto duration = parse_duration_ms(setting.value);
        [[maybe_unused]] auto ports = parse_port_list(setting.value);
    }
    return 0;
}
