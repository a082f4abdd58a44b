// Which requests go through parent proxies, and which parent each one gets.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "cproxy/parents.hpp"

using namespace cproxy;

namespace {

DestinationList list_of(std::string_view text) {
    std::string problem;
    DestinationList list = parse_destination_list(text, problem);
    INFO(problem);
    REQUIRE(problem.empty());
    return list;
}

std::vector<Parent> parents_at(std::vector<std::uint32_t> weights) {
    std::vector<Parent> parents;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        Parent parent;
        parent.name = "127.0.0." + std::to_string(i + 1) + ":3128";
        parent.address = *parse_ip_literal("127.0.0." + std::to_string(i + 1), 3128);
        parent.weight = weights[i];
        parents.push_back(parent);
    }
    return parents;
}

std::string picks(ParentSelector& selector, int count, std::uint64_t now_ms = 0, std::uint32_t excluded = 0) {
    std::string sequence;
    for (int i = 0; i < count; ++i) {
        auto chosen = selector.choose(now_ms, excluded);
        sequence += chosen ? static_cast<char>('A' + *chosen) : '-';
    }
    return sequence;
}

}  // namespace

TEST_CASE("parents: a domain matches itself and its subdomains, in any case") {
    DestinationList list = list_of("example.com, .Corp.Example *.intra");
    CHECK(destination_in(list, "example.com"));
    CHECK(destination_in(list, "WWW.Example.COM"));
    CHECK(destination_in(list, "a.b.example.com."));
    CHECK(destination_in(list, "corp.example"));
    CHECK(destination_in(list, "x.intra"));
    CHECK(destination_in(list, "intra"));
    CHECK_FALSE(destination_in(list, "badexample.com"));
    CHECK_FALSE(destination_in(list, "example.com.evil"));
    CHECK_FALSE(destination_in(list, "com"));
    CHECK_FALSE(destination_in(list, ""));
}

TEST_CASE("parents: addresses and CIDR blocks match IP-literal hosts only") {
    DestinationList list = list_of("10.0.0.0/8 192.0.2.7 2001:db8::/32 example.com");
    CHECK(destination_in(list, "10.1.2.3"));
    CHECK(destination_in(list, "192.0.2.7"));
    CHECK_FALSE(destination_in(list, "192.0.2.8"));
    CHECK(destination_in(list, "2001:db8::1"));
    CHECK_FALSE(destination_in(list, "2001:db9::1"));
    // A name is not looked up to be matched against the blocks.
    CHECK_FALSE(destination_in(list, "localhost"));
    CHECK_FALSE(destination_in(list_of("example.com"), "127.0.0.1"));
}

TEST_CASE("parents: bad destination lists name the bad item") {
    std::string problem;
    parse_destination_list("good.example bad_$.example", problem);
    CHECK(problem == "'bad_$.example' is not a domain name, IP address or CIDR block");
    parse_destination_list("a..b", problem);
    CHECK(problem.find("'a..b'") != std::string::npos);
    parse_destination_list("10.0.0.0/33", problem);
    CHECK(problem.find("'10.0.0.0/33'") != std::string::npos);
    parse_destination_list("all", problem);
    CHECK(problem == "'all' is not a domain name, IP address or CIDR block");
    parse_destination_list(" , ", problem);
    CHECK(problem == "expected domain names, IP addresses or CIDR blocks");
    parse_destination_list(std::string(254, 'a'), problem);
    CHECK_FALSE(problem.empty());
}

TEST_CASE("parents: smooth weighted round-robin spreads picks by weight") {
    ParentSelector selector;
    selector.reset(parents_at({3, 1}));
    CHECK(picks(selector, 8) == "AABAAABA");
    selector.reset(parents_at({1, 1, 1}));
    CHECK(picks(selector, 6) == "ABCABC");
    selector.reset(parents_at({5, 1, 1}));
    std::string sequence = picks(selector, 70);
    CHECK(std::count(sequence.begin(), sequence.end(), 'A') == 50);
    CHECK(std::count(sequence.begin(), sequence.end(), 'B') == 10);
    CHECK(sequence.find("AAAAAA") == std::string::npos);  // interleaved, not in runs
}

TEST_CASE("parents: a parent marked down is skipped until its down time ends") {
    ParentSelector selector;
    selector.reset(parents_at({1, 1}));
    CHECK(selector.mark_down(0, 31'000));
    CHECK_FALSE(selector.mark_down(0, 32'000));  // already down: not news
    CHECK(selector.down(1000) == 1);
    CHECK(picks(selector, 3, 5000) == "BBB");
    CHECK(selector.down(32'000) == 0);
    CHECK(picks(selector, 2, 32'000) == "AB");
    // Tried again after its down time and failing again: the same outage.
    CHECK_FALSE(selector.mark_down(0, 62'000));
    CHECK(selector.down(40'000) == 1);
    CHECK(selector.mark_up(0));
    CHECK_FALSE(selector.mark_up(0));  // once
    CHECK_FALSE(selector.mark_up(1));  // never failed
    CHECK(selector.mark_down(0, 100'000));  // a new outage
}

TEST_CASE("parents: parents a request already tried are excluded, and none may be left") {
    ParentSelector selector;
    selector.reset(parents_at({1, 1, 1}));
    CHECK(picks(selector, 2, 0, 0b001) == "BC");
    CHECK(picks(selector, 1, 0, 0b111) == "-");
    selector.mark_down(1, 100);
    selector.mark_down(2, 100);
    CHECK(picks(selector, 1, 50, 0b001) == "-");
    selector.reset({});
    CHECK(picks(selector, 1) == "-");
}

TEST_CASE("parents: a reload keeps the down time of parents at the same address") {
    ParentSelector selector;
    auto parents = parents_at({1, 1});
    selector.reset(parents);
    selector.mark_down(1, 10'000);
    // The list is reordered and gains a parent; the one down stays down.
    std::vector<Parent> reloaded{parents[1], parents_at({1, 1, 1})[2], parents[0]};
    selector.reset(reloaded);
    CHECK(selector.down(5000) == 1);
    CHECK(picks(selector, 4, 5000) == "BCBC");
    CHECK(selector.mark_up(0));
}
