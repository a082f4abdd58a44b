#include "cproxy/log.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <utility>

namespace cproxy {

namespace {

// The error log's destination. Written at start-up and on reload by the main
// thread, which owns LogFiles; read by every message from any thread. A
// descriptor replaced here stays open until every worker has acknowledged the
// new configuration (LogFiles::close_replaced).
std::atomic<int> error_fd = STDERR_FILENO;
std::atomic<bool> error_to_syslog = false;
std::atomic<LogLevel> error_level = LogLevel::Info;
// The syslog socket: a non-blocking datagram socket connected to the syslog
// daemon's (/dev/log by default). syslog(3) blocks while the daemon's queue
// is full, which would stall a worker; a message that finds the queue full
// is dropped here instead, and counted.
std::atomic<int> syslog_fd = -1;
std::atomic<std::uint64_t> syslog_dropped = 0;
constexpr std::string_view syslog_prefix = "syslog:";

// ISO 8601 UTC with milliseconds: "2026-11-24T16:15:28.123Z".
std::size_t format_now(char* out, std::size_t capacity) noexcept {
    timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    tm parts;
    ::gmtime_r(&now.tv_sec, &parts);
    std::size_t length = ::strftime(out, capacity, "%Y-%m-%dT%H:%M:%S", &parts);
    int more = std::snprintf(out + length, capacity - length, ".%03ldZ", now.tv_nsec / 1'000'000);
    return more > 0 ? length + static_cast<std::size_t>(more) : length;
}

const char* level_name(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::Error: return "error";
    case LogLevel::Warning: return "warning";
    case LogLevel::Info: return "info";
    case LogLevel::Debug: return "debug";
    }
    return "-";
}

int syslog_priority(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::Error: return LOG_ERR;
    case LogLevel::Warning: return LOG_WARNING;
    case LogLevel::Info: return LOG_INFO;
    case LogLevel::Debug: return LOG_DEBUG;
    }
    return LOG_INFO;
}

// RFC 3164 framing, as syslog(3) writes it: "<PRI>Mmm dd hh:mm:ss cproxy[PID]: text".
void send_to_syslog(LogLevel level, const char* format, va_list args) noexcept {
    char line[1024];
    timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    tm parts;
    ::localtime_r(&now.tv_sec, &parts);
    char stamp[32];
    ::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &parts);
    int n = std::snprintf(line, sizeof line, "<%d>%s cproxy[%d]: ", LOG_DAEMON | syslog_priority(level), stamp,
                          ::getpid());
    std::size_t length = n > 0 ? static_cast<std::size_t>(n) : 0;
    n = std::vsnprintf(line + length, sizeof line - length, format, args);
    if (n > 0) length = std::min(length + static_cast<std::size_t>(n), sizeof line - 1);
    if (::send(syslog_fd.load(std::memory_order_relaxed), line, length, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        syslog_dropped.fetch_add(1, std::memory_order_relaxed);
}

void vlog(LogLevel level, const char* format, va_list args) noexcept {
    if (level > error_level) return;
    char line[1024];
    std::size_t length = 0;
    if (error_to_syslog) {
        send_to_syslog(level, format, args);
        return;
    }
    length = format_now(line, sizeof line);
    int n = std::snprintf(line + length, sizeof line - length, " cproxy[%d] %s: ", ::getpid(),
                          level_name(level));
    if (n > 0) length += static_cast<std::size_t>(n);
    n = std::vsnprintf(line + length, sizeof line - length, format, args);
    if (n > 0) length += static_cast<std::size_t>(n);
    if (length > sizeof line - 2) length = sizeof line - 2;
    line[length++] = '\n';
    [[maybe_unused]] auto written = ::write(error_fd.load(std::memory_order_relaxed), line, length);
}

Fd open_log_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640));
    if (!fd) throw std::system_error(errno, std::generic_category(), "cannot open log file " + path);
    return fd;
}

bool is_syslog(std::string_view destination) noexcept {
    return destination == "syslog" || destination.substr(0, syslog_prefix.size()) == syslog_prefix;
}

bool is_file(const std::string& destination) noexcept {
    return !destination.empty() && destination != "stderr" && !is_syslog(destination);
}

// "syslog" is /dev/log; "syslog:PATH" another socket (a container's, say).
Fd open_syslog(std::string_view destination) {
    std::string path = destination == "syslog" ? "/dev/log" : std::string(destination.substr(syslog_prefix.size()));
    Fd socket(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (!socket || path.size() >= sizeof address.sun_path)
        throw std::system_error(socket ? ENAMETOOLONG : errno, std::generic_category(), "syslog socket " + path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
        throw std::system_error(errno, std::generic_category(), "cannot connect to the syslog socket " + path);
    ::tzset();  // localtime_r reads the zone once, here, not in a worker
    return socket;
}

}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view text) noexcept {
    if (text == "error") return LogLevel::Error;
    if (text == "warning") return LogLevel::Warning;
    if (text == "info") return LogLevel::Info;
    if (text == "debug") return LogLevel::Debug;
    return std::nullopt;
}

void log_message(LogLevel level, const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog(level, format, args);
    va_end(args);
}

bool log_enabled(LogLevel level) noexcept { return level <= error_level; }

void log_error(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog(LogLevel::Error, format, args);
    va_end(args);
}

void log_warning(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog(LogLevel::Warning, format, args);
    va_end(args);
}

void log_info(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog(LogLevel::Info, format, args);
    va_end(args);
}

void log_debug(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    vlog(LogLevel::Debug, format, args);
    va_end(args);
}

void LogFiles::open(const std::string& access_log, const std::string& error_log, LogLevel level) {
    Fd access = is_file(access_log) ? open_log_file(access_log) : Fd();
    Fd error = is_file(error_log) ? open_log_file(error_log) : is_syslog(error_log) ? open_syslog(error_log) : Fd();
    error_to_syslog = is_syslog(error_log);
    if (error_to_syslog) syslog_fd = error.get();
    error_fd = error && !error_to_syslog ? error.get() : STDERR_FILENO;
    error_level = level;
    access_path_ = access_log;
    error_path_ = error_log;
    replaced_access_ = std::exchange(access_, std::move(access));
    replaced_error_ = std::exchange(error_, std::move(error));
}

void LogFiles::close_replaced() noexcept {
    replaced_access_.reset();
    replaced_error_.reset();
}

namespace {

// The new file takes the old one's descriptor number, so threads writing to it
// switch files without being told and never see a closed descriptor.
void reopen_in_place(const std::string& path, const Fd& file) noexcept {
    try {
        Fd fresh = open_log_file(path);
        if (::dup3(fresh.get(), file.get(), O_CLOEXEC) < 0)
            log_error("cannot reopen log file %s: %s; still writing to the old file", path.c_str(), std::strerror(errno));
    } catch (const std::system_error& failure) {
        log_error("%s; still writing to the old file", failure.what());
    }
}

}  // namespace

void LogFiles::reopen() noexcept {
    if (is_file(error_path_) && error_) reopen_in_place(error_path_, error_);
    if (is_file(access_path_) && access_) reopen_in_place(access_path_, access_);
}

int LogFiles::access_fd() const noexcept {
    if (access_path_ == "stderr") return STDERR_FILENO;
    return access_ ? access_.get() : -1;
}

void LogFiles::change_owner(uid_t uid, gid_t gid) const noexcept {
    for (const Fd* file : {&access_, &error_})
        if (*file && (file == &access_ || !error_to_syslog) && ::fchown(file->get(), uid, gid) != 0)
            log_warning("cannot hand a log file to uid %u: %s", static_cast<unsigned>(uid),
                        std::strerror(errno));
}

std::uint64_t syslog_messages_dropped() noexcept { return syslog_dropped.load(std::memory_order_relaxed); }

LogFiles::~LogFiles() {
    error_fd = STDERR_FILENO;
    error_to_syslog = false;
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

void AccessLog::flush_if_due(std::uint64_t now_ms) noexcept {
    if (length_ == 0) {
        last_flush_ms_ = now_ms;
        return;
    }
    if (length_ >= capacity / 2 || now_ms - last_flush_ms_ >= 1000) {
        flush();
        last_flush_ms_ = now_ms;
    }
}

int AccessLog::ms_until_due(std::uint64_t now_ms) const noexcept {
    if (length_ == 0) return -1;
    std::uint64_t due = last_flush_ms_ + 1000;
    return due > now_ms ? static_cast<int>(due - now_ms) : 0;
}

// In writes of whole lines up to PIPE_BUF bytes: workers share the file, and
// on a pipe (stderr under a service manager) only writes that small are never
// interleaved with another worker's.
void AccessLog::flush() noexcept {
    std::size_t done = 0;
    while (done < length_) {
        std::size_t chunk = std::min<std::size_t>(length_ - done, PIPE_BUF);
        if (done + chunk < length_) {
            const void* last = ::memrchr(buffer_ + done, '\n', chunk);
            if (last) chunk = static_cast<std::size_t>(static_cast<const char*>(last) - (buffer_ + done)) + 1;
        }
        ssize_t n = ::write(fd_, buffer_ + done, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    length_ = 0;
}

void AccessLog::set_fd(int fd) noexcept {
    flush();
    fd_ = fd;
}

}  // namespace cproxy
