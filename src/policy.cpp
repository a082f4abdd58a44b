#include "cproxy/policy.hpp"

#include "cproxy/http_parser.hpp"

namespace cproxy {

static int base64_value(unsigned char c) noexcept {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

std::optional<std::size_t> base64_decode(std::string_view in, char* out, std::size_t capacity) noexcept {
    if (in.size() % 4 != 0) return std::nullopt;
    std::size_t length = 0;
    for (std::size_t i = 0; i < in.size(); i += 4) {
        bool last = i + 4 == in.size();
        int v[4];
        int padding = 0;
        for (int k = 0; k < 4; ++k) {
            unsigned char c = static_cast<unsigned char>(in[i + static_cast<std::size_t>(k)]);
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                ++padding;
                continue;
            }
            if (padding > 0) return std::nullopt;  // data after '='
            v[k] = base64_value(c);
            if (v[k] < 0) return std::nullopt;
        }
        unsigned triple = (static_cast<unsigned>(v[0]) << 18) | (static_cast<unsigned>(v[1]) << 12) |
                          (static_cast<unsigned>(v[2]) << 6) | static_cast<unsigned>(v[3]);
        std::size_t bytes = static_cast<std::size_t>(3 - padding);
        if (length + bytes > capacity) return std::nullopt;
        out[length++] = static_cast<char>(triple >> 16);
        if (bytes > 1) out[length++] = static_cast<char>((triple >> 8) & 0xff);
        if (bytes > 2) out[length++] = static_cast<char>(triple & 0xff);
    }
    return length;
}

Authenticator::Authenticator(std::vector<std::string> user_pass_pairs)
    : credentials_(std::move(user_pass_pairs)) {}

// Compares all of `expected` whatever `given` holds, so a mismatch in the first
// byte costs the same as one in the last.
static bool constant_time_equal(std::string_view given, std::string_view expected) noexcept {
    unsigned char difference = given.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
        difference |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(expected[i]));
    }
    return difference == 0;
}

std::optional<std::string_view> Authenticator::check(std::string_view field_value, char* scratch,
                                                     std::size_t scratch_size) const noexcept {
    constexpr std::string_view scheme = "basic";
    if (field_value.size() <= scheme.size() ||
        !http::iequals(field_value.substr(0, scheme.size()), scheme))
        return std::nullopt;
    std::string_view encoded = field_value.substr(scheme.size());
    if (encoded.front() != ' ' && encoded.front() != '\t') return std::nullopt;
    while (!encoded.empty() && (encoded.front() == ' ' || encoded.front() == '\t'))
        encoded.remove_prefix(1);
    auto length = base64_decode(encoded, scratch, scratch_size);
    if (!length) return std::nullopt;
    std::string_view given(scratch, *length);
    bool matched = false;
    for (const std::string& pair : credentials_) matched |= constant_time_equal(given, pair);
    if (!matched) return std::nullopt;
    return given.substr(0, given.find(':'));
}

}  // namespace cproxy
