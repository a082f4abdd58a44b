// The idle upstream pool: per-address LIFO reuse, a bound that evicts the
// oldest, age expiry, and drops that ignore stale registrations.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "cproxy/upstream_pool.hpp"

using namespace cproxy;

namespace {

// A descriptor the test can give away and later ask about.
Fd open_connection_stand_in() { return Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

SocketAddress address(const char* host, std::uint16_t port) { return *parse_ip_literal(host, port); }

}  // namespace

TEST_CASE("upstream pool: reuse is per address, newest first") {
    UpstreamPool pool(4);
    Fd a1 = open_connection_stand_in(), a2 = open_connection_stand_in(), b1 = open_connection_stand_in();
    int a1_fd = a1.get(), a2_fd = a2.get(), b1_fd = b1.get();
    pool.park(std::move(a1), address("127.0.0.1", 80), 0);
    pool.park(std::move(b1), address("127.0.0.2", 80), 0);
    pool.park(std::move(a2), address("127.0.0.1", 80), 0);
    CHECK(pool.parked() == 3);
    CHECK_FALSE(pool.take(address("127.0.0.1", 81), 0));  // same host, other port
    CHECK_FALSE(pool.take(address("::1", 80), 0));
    Fd first = pool.take(address("127.0.0.1", 80), 0);
    CHECK(first.get() == a2_fd);
    Fd second = pool.take(address("127.0.0.1", 80), 0);
    CHECK(second.get() == a1_fd);
    CHECK_FALSE(pool.take(address("127.0.0.1", 80), 0));
    Fd other = pool.take(address("127.0.0.2", 80), 0);
    CHECK(other.get() == b1_fd);
    CHECK(pool.parked() == 0);
}

TEST_CASE("upstream pool: when full, the connection idle longest is closed") {
    UpstreamPool pool(2);
    Fd oldest = open_connection_stand_in(), middle = open_connection_stand_in(), newest = open_connection_stand_in();
    int oldest_fd = oldest.get(), middle_fd = middle.get(), newest_fd = newest.get();
    pool.park(std::move(oldest), address("127.0.0.1", 80), 10);
    pool.park(std::move(middle), address("127.0.0.1", 81), 20);
    pool.park(std::move(newest), address("127.0.0.1", 82), 30);
    CHECK(pool.parked() == 2);
    CHECK_FALSE(is_open(oldest_fd));
    CHECK(is_open(middle_fd));
    CHECK(pool.take(address("127.0.0.1", 82), 30).get() == newest_fd);
}

TEST_CASE("upstream pool: connections expire after the idle timeout") {
    std::uint32_t timeout = GENERATE(UpstreamPool::default_idle_timeout_ms, 300u);
    UpstreamPool pool(4, timeout);
    Fd early = open_connection_stand_in(), late = open_connection_stand_in();
    int early_fd = early.get(), late_fd = late.get();
    pool.park(std::move(early), address("127.0.0.1", 80), 1000);
    pool.park(std::move(late), address("127.0.0.1", 80), 1100);
    pool.expire(1000 + timeout - 1);
    CHECK(pool.parked() == 2);
    pool.expire(1000 + timeout);
    CHECK(pool.parked() == 1);
    CHECK_FALSE(is_open(early_fd));
    // take() applies the same age limit before it looks.
    CHECK_FALSE(pool.take(address("127.0.0.1", 80), 1100 + timeout));
    CHECK_FALSE(is_open(late_fd));
}

TEST_CASE("upstream pool: a new idle timeout applies to connections already parked") {
    UpstreamPool pool(2);
    pool.park(open_connection_stand_in(), address("127.0.0.1", 80), 1000);
    pool.set_idle_timeout(100);
    pool.expire(1100);
    CHECK(pool.parked() == 0);
}

TEST_CASE("upstream pool: a drop closes only the registration it was meant for") {
    UpstreamPool pool(2);
    Fd first = open_connection_stand_in();
    int first_fd = first.get();
    auto parked = pool.park(std::move(first), address("127.0.0.1", 80), 0).value();
    Fd taken = pool.take(address("127.0.0.1", 80), 0);
    REQUIRE(taken.get() == first_fd);
    // An event queued for the parked registration arrives after the take.
    pool.drop(parked.slot, parked.generation);
    CHECK(is_open(first_fd));
    auto again = pool.park(std::move(taken), address("127.0.0.1", 80), 0).value();
    CHECK(again.slot == parked.slot);
    CHECK(again.generation != parked.generation);
    pool.drop(parked.slot, parked.generation);
    CHECK(pool.parked() == 1);
    pool.drop(again.slot, again.generation);
    CHECK(pool.parked() == 0);
    CHECK_FALSE(is_open(first_fd));
}

TEST_CASE("upstream pool: capacity 0 keeps nothing") {
    UpstreamPool pool(0);
    Fd connection = open_connection_stand_in();
    int fd = connection.get();
    CHECK_FALSE(pool.park(std::move(connection), address("127.0.0.1", 80), 0));
    CHECK_FALSE(is_open(fd));
    CHECK_FALSE(pool.take(address("127.0.0.1", 80), 0));
}
