#include "cproxy/parents.hpp"

#include <algorithm>
#include <cctype>

#include "cproxy/http_parser.hpp"

namespace cproxy {

namespace {

bool is_separator(char c) noexcept { return c == ',' || c == ' ' || c == '\t'; }

bool valid_domain(std::string_view domain) noexcept {
    if (domain.empty() || domain.size() > 253) return false;
    std::size_t label = 0;
    for (char c : domain) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!allowed || ++label > 63) return false;
    }
    return label != 0;
}

}  // namespace

DestinationList parse_destination_list(std::string_view text, std::string& problem) {
    DestinationList list;
    problem.clear();
    std::size_t i = 0;
    while (true) {
        while (i < text.size() && is_separator(text[i])) ++i;
        if (i == text.size()) break;
        std::size_t end = i;
        while (end < text.size() && !is_separator(text[end])) ++end;
        std::string_view item = text.substr(i, end - i);
        i = end;
        if (auto ranges = parse_address_ranges(item); ranges && item != "all") {
            list.ranges.insert(list.ranges.end(), ranges->begin(), ranges->end());
            continue;
        }
        std::string domain;
        for (char c : item) domain += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string_view name = domain;
        if (name.starts_with("*.")) name.remove_prefix(2);
        else if (name.starts_with(".")) name.remove_prefix(1);
        if (name.ends_with(".")) name.remove_suffix(1);
        if (!valid_domain(name) || name == "all") {
            problem.assign(1, '\'').append(item).append("' is not a domain name, IP address or CIDR block");
            return {};
        }
        list.domains.emplace_back(name);
    }
    if (list.empty()) problem = "expected domain names, IP addresses or CIDR blocks";
    return list;
}

bool destination_in(const DestinationList& list, std::string_view host) noexcept {
    if (auto literal = parse_ip_literal(host, 0)) return address_in(list.ranges, *literal);
    if (host.ends_with(".")) host.remove_suffix(1);
    for (const std::string& domain : list.domains) {
        if (host.size() < domain.size() || !http::iequals(host.substr(host.size() - domain.size()), domain))
            continue;
        if (host.size() == domain.size() || host[host.size() - domain.size() - 1] == '.') return true;
    }
    return false;
}

void ParentSelector::reset(const std::vector<Parent>& parents) {
    std::vector<State> states(parents.size());
    for (std::size_t i = 0; i < parents.size(); ++i) {
        states[i].address = parents[i].address;
        states[i].weight = parents[i].weight;
        for (const State& old : states_) {
            if (old.address == parents[i].address) {
                states[i].down_until_ms = old.down_until_ms;
                states[i].failed = old.failed;
            }
        }
    }
    states_ = std::move(states);
}

// nginx's smooth weighted round-robin: each pick adds every candidate's
// weight to its score and takes the highest, which then pays back the total,
// so weights 3 and 1 give A A B A rather than A A A B.
std::optional<std::uint8_t> ParentSelector::choose(std::uint64_t now_ms, std::uint32_t excluded) noexcept {
    std::int64_t total = 0;
    std::optional<std::uint8_t> best;
    for (std::size_t i = 0; i < states_.size(); ++i) {
        State& state = states_[i];
        if ((excluded >> i & 1) || state.down_until_ms > now_ms) continue;
        state.current += state.weight;
        total += state.weight;
        if (!best || state.current > states_[*best].current) best = static_cast<std::uint8_t>(i);
    }
    if (best) states_[*best].current -= total;
    return best;
}

bool ParentSelector::mark_down(std::uint8_t parent, std::uint64_t until_ms) noexcept {
    if (parent >= states_.size()) return false;
    State& state = states_[parent];
    bool news = !state.failed;
    state.down_until_ms = std::max(state.down_until_ms, until_ms);
    state.failed = true;
    state.current = 0;
    return news;
}

bool ParentSelector::mark_up(std::uint8_t parent) noexcept {
    if (parent >= states_.size() || !states_[parent].failed) return false;
    states_[parent].failed = false;
    return true;
}

std::uint32_t ParentSelector::down(std::uint64_t now_ms) const noexcept {
    std::uint32_t count = 0;
    for (const State& state : states_) count += state.down_until_ms > now_ms;
    return count;
}

}  // namespace cproxy
