// Logging: the error log (start-up and rare events, one write per message, to
// stderr, a file or syslog) and the access log (one line per request or tunnel,
// buffered per worker and written at most about once a second, so a busy loop
// makes one write per second rather than one per request).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cproxy/fd.hpp"

namespace cproxy {

enum class LogLevel : std::uint8_t { Error, Warning, Info, Debug };

std::optional<LogLevel> parse_log_level(std::string_view text) noexcept;

[[gnu::format(printf, 1, 2)]] void log_error(const char* format, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void log_warning(const char* format, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void log_info(const char* format, ...) noexcept;
[[gnu::format(printf, 1, 2)]] void log_debug(const char* format, ...) noexcept;
[[gnu::format(printf, 2, 3)]] void log_message(LogLevel level, const char* format, ...) noexcept;
// Whether a message at `level` would be written: lets callers skip the work
// of formatting its arguments.
bool log_enabled(LogLevel level) noexcept;
// Error-log messages the syslog daemon had no room for (they are dropped
// rather than block the thread that logs).
std::uint64_t syslog_messages_dropped() noexcept;

// Where the error log goes: "stderr", "syslog" (/dev/log), "syslog:SOCKET" or
// a file path; the access log:
// "" (off), "stderr" or a file path. Files are opened for append, before
// privileges are dropped, and reopened on request (SIGUSR1, after logrotate
// moved them).
class LogFiles {
public:
    // Throws std::system_error naming the path that cannot be opened; on
    // failure the previous destinations stay in use. On success the files
    // replaced stay open until close_replaced(), for workers still writing
    // to them.
    void open(const std::string& access_log, const std::string& error_log, LogLevel level);
    void close_replaced() noexcept;
    // Opens the same paths again, under the same descriptor numbers; a path
    // that fails is reported and its old file kept.
    void reopen() noexcept;
    int access_fd() const noexcept;  // -1 when the access log is off
    // Hands the open files to the user cproxy is about to become, so that
    // reopening them by name later still works.
    void change_owner(uid_t uid, gid_t gid) const noexcept;
    ~LogFiles();

private:
    std::string access_path_;
    std::string error_path_;
    Fd access_;
    Fd error_;
    Fd replaced_access_;
    Fd replaced_error_;
};

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
    // Writes the buffer when a second has passed since the last write or it is
    // half full.
    void flush_if_due(std::uint64_t now_ms) noexcept;
    // How long the loop may sleep before the buffer is due (-1: nothing held).
    int ms_until_due(std::uint64_t now_ms) const noexcept;
    void flush() noexcept;
    // Flushes to the old descriptor, then writes to `fd` (-1: off).
    void set_fd(int fd) noexcept;

private:
    static constexpr std::size_t capacity = 65536;
    int fd_;
    std::size_t length_ = 0;
    std::uint64_t last_flush_ms_ = 0;
    char buffer_[capacity];
};

}  // namespace cproxy
