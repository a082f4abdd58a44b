#include "cproxy/policy.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

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

std::string base64_encode(std::string_view in) {
    constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < in.size(); i += 3) {
        std::size_t n = std::min<std::size_t>(3, in.size() - i);
        std::uint32_t group = 0;
        for (std::size_t j = 0; j < 3; ++j)
            group = group << 8 | (j < n ? static_cast<unsigned char>(in[i + j]) : 0u);
        for (std::size_t j = 0; j < 4; ++j)
            out += j <= n ? alphabet[group >> (18 - 6 * j) & 63] : '=';
    }
    return out;
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

static std::optional<AddressRange> parse_address_range(std::string_view text) {
    AddressRange range;
    auto slash = text.find('/');
    std::string address(text.substr(0, slash));
    if (::inet_pton(AF_INET, address.c_str(), range.bytes) == 1) {
        range.family = AF_INET;
        range.prefix = 32;
    } else if (::inet_pton(AF_INET6, address.c_str(), range.bytes) == 1) {
        range.family = AF_INET6;
        range.prefix = 128;
    } else {
        return std::nullopt;
    }
    if (slash != std::string_view::npos) {
        std::string_view digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3) return std::nullopt;
        unsigned prefix = 0;
        for (char c : digits) {
            if (c < '0' || c > '9') return std::nullopt;
            prefix = prefix * 10 + static_cast<unsigned>(c - '0');
        }
        if (prefix > range.prefix) return std::nullopt;
        range.prefix = prefix;
    }
    // ::ffff:a.b.c.d/96+N is the IPv4 range a.b.c.d/N, as addresses are compared unmapped.
    static constexpr unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (range.family == AF_INET6 && range.prefix >= 96 && std::memcmp(range.bytes, mapped_prefix, 12) == 0) {
        std::memmove(range.bytes, range.bytes + 12, 4);
        std::memset(range.bytes + 4, 0, 12);
        range.family = AF_INET;
        range.prefix -= 96;
    }
    return range;
}

std::optional<std::vector<AddressRange>> parse_address_ranges(std::string_view text) {
    std::vector<AddressRange> ranges;
    if (text == "all") {
        ranges.resize(2);
        ranges[0].family = AF_INET;
        ranges[1].family = AF_INET6;
        return ranges;
    }
    while (true) {
        auto comma = text.find(',');
        auto range = parse_address_range(text.substr(0, comma));
        if (!range) return std::nullopt;
        ranges.push_back(*range);
        if (comma == std::string_view::npos) return ranges;
        text.remove_prefix(comma + 1);
    }
}

bool AddressRange::contains(const SocketAddress& address) const noexcept {
    const unsigned char* candidate;
    if (address.family() == AF_INET && family == AF_INET) {
        candidate = reinterpret_cast<const unsigned char*>(
            &reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr);
    } else if (address.family() == AF_INET6) {
        const auto& a6 = reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr;
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        if (family == AF_INET && IN6_IS_ADDR_V4MAPPED(&a6)) candidate = a6.s6_addr + 12;
        else if (family == AF_INET6) candidate = a6.s6_addr;
        else return false;
    } else {
        return false;
    }
    unsigned whole = prefix / 8;
    if (std::memcmp(candidate, bytes, whole) != 0) return false;
    unsigned rest = prefix % 8;
    if (rest == 0) return true;
    auto mask = static_cast<unsigned char>(0xff << (8 - rest));
    return (candidate[whole] & mask) == (bytes[whole] & mask);
}

bool address_in(const std::vector<AddressRange>& ranges, const SocketAddress& address) noexcept {
    for (const AddressRange& range : ranges)
        if (range.contains(address)) return true;
    return false;
}

bool client_allowed(const std::vector<AccessRule>& rules, const SocketAddress& client) noexcept {
    bool any_allow = false;
    for (const AccessRule& rule : rules) {
        if (rule.range.contains(client)) return rule.allow;
        any_allow |= rule.allow;
    }
    return !any_allow;
}

}  // namespace cproxy
