// What running as a system service needs beyond the proxy itself: the pid
// file, dropping root after binding, and telling systemd how start-up, reload
// and stop go (the sd_notify protocol, spoken natively: a datagram to
// $NOTIFY_SOCKET, so there is no libsystemd dependency).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace cproxy {

// Sends `state` ("READY=1", ...) when $NOTIFY_SOCKET names a socket; a no-op
// otherwise. Never blocks: a full socket drops the message.
void notify_service_manager(std::string_view state) noexcept;
// RELOADING=1 with the MONOTONIC_USEC field newer systemd versions ask for.
void notify_reloading() noexcept;

class PidFile {
public:
    PidFile() = default;
    PidFile(const PidFile&) = delete;
    PidFile& operator=(const PidFile&) = delete;
    // Writes this process's id to `path`; throws std::system_error naming it.
    void write(const std::string& path);
    ~PidFile();  // removes the file it wrote, if it still can

private:
    std::string path_;
};

struct Identity {
    std::string user;
    uid_t uid;
    gid_t gid;
};

// `user`'s ids, with `group`'s id instead of the user's primary group when
// given; throws std::system_error naming the one that does not exist.
Identity look_up_identity(const std::string& user, const std::string& group);

// Switches to `identity` (and the user's supplementary groups); throws
// std::system_error naming the step that failed. Call as root, after
// everything that needs root is open.
void drop_privileges(const Identity& identity);

}  // namespace cproxy
