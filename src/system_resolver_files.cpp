#include "cproxy/system_resolver_files.hpp"

#include <algorithm>

namespace cproxy {

namespace {

// The whitespace-separated words of a line, up to a '#' or ';' comment.
std::vector<std::string_view> words_of(std::string_view line) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
        if (i == line.size() || line[i] == '#' || line[i] == ';') break;
        std::size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
        words.push_back(line.substr(start, i - start));
    }
    return words;
}

template <class F>
void for_each_line(std::string_view text, F&& on_words) {
    while (!text.empty()) {
        std::size_t newline = std::min(text.find('\n'), text.size());
        auto words = words_of(text.substr(0, newline));
        if (!words.empty()) on_words(words);
        text.remove_prefix(std::min(newline + 1, text.size()));
    }
}

std::string lowercase_name(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    std::string lower(name);
    for (char& c : lower)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return lower;
}

// "ndots:2" → 2, clamped to [low, high]; false if not NAME:NUMBER.
bool option_value(std::string_view option, std::string_view name, unsigned low, unsigned high,
                  unsigned& out) {
    if (option.size() <= name.size() + 1 || option.substr(0, name.size()) != name ||
        option[name.size()] != ':')
        return false;
    unsigned value = 0;
    for (char c : option.substr(name.size() + 1)) {
        if (c < '0' || c > '9') return false;
        value = std::min(value * 10 + static_cast<unsigned>(c - '0'), 1000u);
    }
    out = std::clamp(value, low, high);
    return true;
}

}  // namespace

ResolvConf parse_resolv_conf(std::string_view text) {
    ResolvConf conf;
    for_each_line(text, [&](const std::vector<std::string_view>& words) {
        std::string_view keyword = words[0];
        if (keyword == "nameserver" && words.size() >= 2) {
            // A scoped IPv6 address (fe80::1%eth0) is not supported and skipped.
            auto address = parse_ip_literal(words[1], 53);
            if (address && conf.nameservers.size() < ResolvConf::max_nameservers)
                conf.nameservers.push_back(*address);
        } else if ((keyword == "search" || keyword == "domain") && words.size() >= 2) {
            // The last search or domain line wins.
            conf.search.clear();
            for (std::size_t i = 1; i < words.size() && conf.search.size() < ResolvConf::max_search; ++i)
                conf.search.push_back(lowercase_name(words[i]));
        } else if (keyword == "options") {
            // Other options (rotate, edns0, ...) are skipped.
            for (std::size_t i = 1; i < words.size(); ++i) {
                if (option_value(words[i], "ndots", 0, 15, conf.ndots)) continue;
                if (option_value(words[i], "timeout", 1, 30, conf.timeout_s)) continue;
                option_value(words[i], "attempts", 1, 5, conf.attempts);
            }
        }
    });
    if (conf.nameservers.empty()) conf.nameservers.push_back(*parse_ip_literal("127.0.0.1", 53));
    return conf;
}

std::vector<HostsEntry> parse_hosts(std::string_view text) {
    std::vector<HostsEntry> entries;
    for_each_line(text, [&](const std::vector<std::string_view>& words) {
        auto address = parse_ip_literal(words[0], 0);
        if (!address) return;
        for (std::size_t i = 1; i < words.size(); ++i)
            entries.push_back({lowercase_name(words[i]), *address});
    });
    return entries;
}

void HostsTable::assign(std::vector<HostsEntry> entries) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](const HostsEntry& a, const HostsEntry& b) { return a.name < b.name; });
    entries_ = std::move(entries);
}

std::span<const HostsEntry> HostsTable::find(std::string_view name) const noexcept {
    auto first = std::lower_bound(entries_.begin(), entries_.end(), name,
                                  [](const HostsEntry& entry, std::string_view key) { return entry.name < key; });
    auto last = first;
    while (last != entries_.end() && last->name == name) ++last;
    return {first, last};
}

}  // namespace cproxy
