#include "cproxy/service.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "cproxy/fd.hpp"

namespace cproxy {

void notify_service_manager(std::string_view state) noexcept {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@')) return;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::size_t length = std::strlen(path);
    if (length >= sizeof address.sun_path) return;
    std::memcpy(address.sun_path, path, length);
    // A leading '@' names an abstract socket: its first byte is NUL.
    if (path[0] == '@') address.sun_path[0] = '\0';
    Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return;
    auto address_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
    [[maybe_unused]] auto sent = ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                                          reinterpret_cast<const sockaddr*>(&address), address_length);
}

void notify_reloading() noexcept {
    timespec now;
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    char state[64];
    int length = std::snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%llu",
                               static_cast<unsigned long long>(now.tv_sec) * 1'000'000ull +
                                   static_cast<unsigned long long>(now.tv_nsec) / 1000);
    if (length > 0) notify_service_manager(std::string_view(state, static_cast<std::size_t>(length)));
}

void PidFile::write(const std::string& path) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) throw std::system_error(errno, std::generic_category(), "cannot write pid file " + path);
    char text[32];
    int length = std::snprintf(text, sizeof text, "%d\n", static_cast<int>(::getpid()));
    if (::write(fd.get(), text, static_cast<std::size_t>(length)) != length)
        throw std::system_error(errno, std::generic_category(), "cannot write pid file " + path);
    path_ = path;
}

PidFile::~PidFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
}

Identity look_up_identity(const std::string& user, const std::string& group) {
    errno = 0;
    const passwd* account = ::getpwnam(user.c_str());
    if (!account)
        throw std::system_error(errno ? errno : ENOENT, std::generic_category(), "user " + user);
    Identity identity{user, account->pw_uid, account->pw_gid};
    if (!group.empty()) {
        errno = 0;
        const struct group* entry = ::getgrnam(group.c_str());
        if (!entry)
            throw std::system_error(errno ? errno : ENOENT, std::generic_category(), "group " + group);
        identity.gid = entry->gr_gid;
    }
    return identity;
}

void drop_privileges(const Identity& identity) {
    if (::initgroups(identity.user.c_str(), identity.gid) != 0)
        throw std::system_error(errno, std::generic_category(), "initgroups " + identity.user);
    if (::setgid(identity.gid) != 0) throw std::system_error(errno, std::generic_category(), "setgid");
    if (::setuid(identity.uid) != 0)
        throw std::system_error(errno, std::generic_category(), "setuid " + identity.user);
    // Root must be gone for good, not just set aside.
    if (identity.uid != 0 && ::setuid(0) == 0)
        throw std::system_error(EPERM, std::generic_category(), "could regain root after setuid");
}

}  // namespace cproxy
