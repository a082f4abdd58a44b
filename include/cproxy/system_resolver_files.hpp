// The system's resolver files, read the way the C library reads them:
// /etc/resolv.conf (nameserver, search/domain, options ndots/timeout/attempts)
// and /etc/hosts. Pure parsers over the files' text; a line they do not
// understand is skipped, as glibc skips it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cproxy/address.hpp"

namespace cproxy {

struct ResolvConf {
    static constexpr std::size_t max_nameservers = 3;  // glibc's MAXNS
    static constexpr std::size_t max_search = 6;       // glibc's MAXDNSRCH
    std::vector<SocketAddress> nameservers;  // port 53; 127.0.0.1 when the file names none
    std::vector<std::string> search;         // lowercase, without final dots
    unsigned ndots = 1;                      // 0-15
    unsigned timeout_s = 5;                  // 1-30
    unsigned attempts = 2;                   // 1-5
};

ResolvConf parse_resolv_conf(std::string_view text);

struct HostsEntry {
    std::string name;  // lowercase, without a final dot
    SocketAddress address;  // port 0
};

// One entry per name on each line, in file order (the first wins on lookup).
std::vector<HostsEntry> parse_hosts(std::string_view text);

// The hosts file's entries by name, for lookups without a scan.
class HostsTable {
public:
    void assign(std::vector<HostsEntry> entries);
    // Every entry for `name` (lowercase, without a final dot), in file order.
    std::span<const HostsEntry> find(std::string_view name) const noexcept;
    std::size_t size() const noexcept { return entries_.size(); }

private:
    std::vector<HostsEntry> entries_;  // sorted by name, file order kept within a name
};

}  // namespace cproxy
