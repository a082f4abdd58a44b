// Shared by the libFuzzer harnesses: the entry point each one defines, and a
// split of the input into a parameter byte and the message bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace cproxy::fuzz {

// The first byte picks where the message is split when it is fed in two
// pieces; the rest is the message.
struct SplitInput {
    std::string_view message;
    std::size_t split;  // 0..message.size()
};

inline SplitInput split_input(const std::uint8_t* data, std::size_t size) noexcept {
    if (size == 0) return {{}, 0};
    std::string_view message(reinterpret_cast<const char*>(data + 1), size - 1);
    std::size_t split = message.empty() ? 0 : data[0] % (message.size() + 1);
    return {message, split};
}

// Makes a violated property crash the harness, so the fuzzer keeps the input.
inline void require(bool property) noexcept {
    if (!property) __builtin_trap();
}

}  // namespace cproxy::fuzz
