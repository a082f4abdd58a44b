// upstream_max_connections' bookkeeping: counts per address, a FIFO queue
// that freed places pass through, cancellation anywhere in the queue, and a
// table that stays consistent through heavy churn of many addresses.
#include <catch2/catch.hpp>

#include <deque>
#include <map>
#include <random>
#include <string>

#include "cproxy/upstream_limiter.hpp"

using namespace cproxy;

namespace {

SocketAddress address(const char* host, std::uint16_t port) { return *parse_ip_literal(host, port); }

}  // namespace

TEST_CASE("upstream limiter: no limit admits everything and queues nothing") {
    UpstreamLimiter limiter(0, 4, 8);
    CHECK_FALSE(limiter.enabled());
    for (int i = 0; i < 100; ++i) CHECK(limiter.acquire(address("127.0.0.1", 80)));
    CHECK_FALSE(limiter.release(address("127.0.0.1", 80)));
    CHECK(limiter.waiting() == 0);
}

TEST_CASE("upstream limiter: counts per address and port") {
    UpstreamLimiter limiter(2, 4, 8);
    SocketAddress a = address("127.0.0.1", 80), b = address("127.0.0.1", 81), c = address("::1", 80);
    CHECK(limiter.acquire(a));
    CHECK(limiter.acquire(a));
    CHECK_FALSE(limiter.acquire(a));
    CHECK(limiter.acquire(b));
    CHECK(limiter.acquire(c));
    CHECK(limiter.acquire(c));
    CHECK_FALSE(limiter.acquire(c));
    CHECK_FALSE(limiter.release(a));
    CHECK(limiter.acquire(a));
}

TEST_CASE("upstream limiter: a freed place goes to the first waiter, not a newcomer") {
    UpstreamLimiter limiter(1, 8, 8);
    SocketAddress a = address("10.0.0.1", 443);
    REQUIRE(limiter.acquire(a));
    limiter.wait(a, 3);
    limiter.wait(a, 5);
    limiter.wait(a, 1);
    CHECK(limiter.waiting() == 3);
    limiter.cancel(a, 5);
    CHECK(limiter.waiting() == 2);
    auto first = limiter.release(a);
    REQUIRE(first);
    CHECK(*first == 3);
    CHECK_FALSE(limiter.acquire(a));  // the place is 3's; 1 still waits ahead of newcomers
    auto second = limiter.take_waiter(a);
    REQUIRE(second);
    CHECK(*second == 1);
    CHECK(limiter.waiting() == 0);
    CHECK_FALSE(limiter.acquire(a));  // 3's place, now 1's connection, still counts
    CHECK_FALSE(limiter.release(a));  // that connection closes: nobody waits
    CHECK(limiter.acquire(a));
    CHECK_FALSE(limiter.release(a));
    CHECK(limiter.addresses_in_use() == 0);
}

TEST_CASE("upstream limiter: cancelling the last and the only waiter") {
    UpstreamLimiter limiter(1, 4, 4);
    SocketAddress a = address("127.0.0.1", 8080);
    REQUIRE(limiter.acquire(a));
    limiter.wait(a, 0);
    limiter.wait(a, 1);
    limiter.cancel(a, 1);
    limiter.cancel(a, 0);
    CHECK(limiter.waiting() == 0);
    CHECK_FALSE(limiter.release(a));
    CHECK(limiter.addresses_in_use() == 0);
}

TEST_CASE("upstream limiter: many addresses through churn agree with a model") {
    constexpr std::uint32_t sessions = 64, limit = 2;
    UpstreamLimiter limiter(limit, sessions, 3 * sessions);
    std::mt19937 random(12345);
    std::vector<SocketAddress> addresses;
    for (int i = 0; i < 40; ++i)
        addresses.push_back(address(("127.0." + std::to_string(i / 8) + "." + std::to_string(i % 8 + 1)).c_str(),
                                    static_cast<std::uint16_t>(80 + i % 3)));
    std::map<std::size_t, std::uint32_t> count;
    std::map<std::size_t, std::deque<std::uint32_t>> queue;
    std::vector<int> waiting_for(sessions, -1);
    for (int step = 0; step < 20000; ++step) {
        std::size_t which = random() % addresses.size();
        const SocketAddress& a = addresses[which];
        switch (random() % 4) {
        case 0: {  // a new connection, or join the queue
            std::uint32_t session = random() % sessions;
            if (waiting_for[session] != -1) break;
            bool admitted = count[which] < limit && queue[which].empty();
            REQUIRE(limiter.acquire(a) == admitted);
            if (admitted) {
                ++count[which];
            } else {
                limiter.wait(a, session);
                queue[which].push_back(session);
                waiting_for[session] = static_cast<int>(which);
            }
            break;
        }
        case 1:  // a connection closes
            if (count[which] == 0) break;
            if (auto granted = limiter.release(a)) {
                REQUIRE_FALSE(queue[which].empty());
                REQUIRE(*granted == queue[which].front());
                waiting_for[queue[which].front()] = -1;
                queue[which].pop_front();
            } else {
                REQUIRE(queue[which].empty());
                --count[which];
            }
            break;
        case 2: {  // a waiter gives up
            std::uint32_t session = random() % sessions;
            if (waiting_for[session] != static_cast<int>(which)) break;
            limiter.cancel(a, session);
            std::erase(queue[which], session);
            waiting_for[session] = -1;
            break;
        }
        case 3:  // a connection is handed over whole
            if (auto taken = limiter.take_waiter(a)) {
                REQUIRE(*taken == queue[which].front());
                waiting_for[queue[which].front()] = -1;
                queue[which].pop_front();
            } else {
                REQUIRE(queue[which].empty());
            }
            break;
        }
    }
    std::uint32_t waiters = 0;
    for (auto& [which, q] : queue) waiters += static_cast<std::uint32_t>(q.size());
    CHECK(limiter.waiting() == waiters);
}
