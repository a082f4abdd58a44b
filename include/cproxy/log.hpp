// Logging: the error log (start-up and rare events, straight to stderr) and the
// access log (one line per request or tunnel, buffered per worker and written
// once per loop iteration so a busy loop makes one write, not one per request).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cproxy {

[[gnu::format(printf, 1, 2)]] void log_error(const char* format, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void log_warning(const char* format, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void log_info(const char* format, ...) noexcept;

struct AccessRecord {
    std::string_view client;
    std::string_view user;
    std::string_view method;
    std::string_view target;
    int status;
    std::uint64_t bytes_in;
    std::uint64_t bytes_out;
    std::uint64_t duration_ms;
    std::string_view upstream;
    std::string_view end;
};

class AccessLog {
public:
    explicit AccessLog(int fd) noexcept : fd_(fd) {}
    bool enabled() const noexcept { return fd_ >= 0; }
    void write(const AccessRecord& record) noexcept;
    void flush() noexcept;

private:
    static constexpr std::size_t capacity = 65536;
    int fd_;
    std::size_t length_ = 0;
    char buffer_[capacity];
};

}  // namespace cproxy
