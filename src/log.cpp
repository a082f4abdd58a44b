#include "cproxy/log.hpp"

#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>

namespace cproxy {

// ISO 8601 UTC with milliseconds: "2026-11-24T16:15:28.123Z".
static std::size_t format_now(char* out, std::size_t capacity) noexcept {
    timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    tm parts;
    ::gmtime_r(&now.tv_sec, &parts);
    std::size_t length = ::strftime(out, capacity, "%Y-%m-%dT%H:%M:%S", &parts);
    int more = std::snprintf(out + length, capacity - length, ".%03ldZ", now.tv_nsec / 1'000'000);
    return more > 0 ? length + static_cast<std::size_t>(more) : length;
}

static void vlog(const char* level, const char* format, va_list args) noexcept {
    char line[1024];
    std::size_t length = format_now(line, sizeof line);
    int n = std::snprintf(line + length, sizeof line - length, " cproxy[%d] %s: ", ::getpid(), level);
    if (n > 0) length += static_cast<std::size_t>(n);
    n = std::vsnprintf(line + length, sizeof line - length, format, args);
    if (n > 0) length += static_cast<std::size_t>(n);
    if (length > sizeof line - 2) length = sizeof line - 2;
    line[length++] = '\n';
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line, length);
}

void log_error(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog("error", format, args);
    va_end(args);
}

void log_warning(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog("warning", format, args);
    va_end(args);
}

void log_info(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog("info", format, args);
    va_end(args);
}

static std::string_view or_dash(std::string_view field) noexcept {
    return field.empty() ? std::string_view("-") : field;
}

void AccessLog::write(const AccessRecord& r) noexcept {
    if (fd_ < 0) return;
    constexpr std::size_t max_line = 1024;
    if (capacity - length_ < max_line) flush();
    char* out = buffer_ + length_;
    std::size_t n = format_now(out, max_line);
    int rest = std::snprintf(
        out + n, max_line - n, " %.*s %.*s %.*s %.*s %d %llu %llu %llu %.*s %.*s\n",
        static_cast<int>(or_dash(r.client).size()), or_dash(r.client).data(),
        static_cast<int>(or_dash(r.user).size()), or_dash(r.user).data(),
        static_cast<int>(or_dash(r.method).size()), or_dash(r.method).data(),
        static_cast<int>(or_dash(r.target).size()), or_dash(r.target).data(), r.status,
        static_cast<unsigned long long>(r.bytes_in), static_cast<unsigned long long>(r.bytes_out),
        static_cast<unsigned long long>(r.duration_ms),
        static_cast<int>(or_dash(r.upstream).size()), or_dash(r.upstream).data(),
        static_cast<int>(or_dash(r.end).size()), or_dash(r.end).data());
    if (rest < 0) return;
    n += static_cast<std::size_t>(rest);
    if (n >= max_line) {
        n = max_line;
        out[n - 1] = '\n';
    }
    length_ += n;
}

void AccessLog::flush() noexcept {
    std::size_t done = 0;
    while (done < length_) {
        ssize_t n = ::write(fd_, buffer_ + done, length_ - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    length_ = 0;
}

}  // namespace cproxy
