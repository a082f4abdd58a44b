// The fixed-capacity structures under the reactor: slab, buffer pool, timer wheel.
#include <catch2/catch.hpp>

#include <vector>

#include "cproxy/buffer.hpp"
#include "cproxy/slab.hpp"
#include "cproxy/timer_wheel.hpp"

using namespace cproxy;

TEST_CASE("slab: fixed capacity, reuse, generations") {
    Slab<int> slab(3);
    auto a = slab.acquire(), b = slab.acquire(), c = slab.acquire();
    REQUIRE((a && b && c));
    CHECK_FALSE(slab.acquire());
    CHECK(slab.used() == 3);
    std::uint32_t generation = slab.generation(*b);
    slab[*b] = 42;
    CHECK(slab.live(*b, generation));
    slab.release(*b);
    CHECK_FALSE(slab.live(*b, generation));
    auto again = slab.acquire();
    REQUIRE(again);
    CHECK(*again == *b);
    CHECK(slab[*again] == 0);  // reset on reuse
    CHECK_FALSE(slab.live(*again, generation));
    CHECK(slab.live(*again, slab.generation(*again)));
    CHECK_FALSE(slab.live(99, 0));
}

TEST_CASE("buffer pool: bounded, LIFO, data survives compaction") {
    BufferPool pool(2);
    Buffer* a = pool.acquire();
    Buffer* b = pool.acquire();
    REQUIRE((a && b));
    CHECK(pool.acquire() == nullptr);
    CHECK(pool.in_use() == 2);
    std::memcpy(a->space(), "hello world", 11);
    a->commit(11);
    a->consume(6);
    CHECK(a->view() == "world");
    a->compact();
    CHECK(a->view() == "world");
    CHECK(a->space_size() == buffer_size - 5);
    a->consume(5);
    CHECK(a->empty());
    CHECK(a->space_size() == buffer_size);
    pool.release(b);
    CHECK(pool.acquire() == b);
    pool.release(a);
    pool.release(b);
    CHECK(pool.in_use() == 0);
}

TEST_CASE("timer wheel: expiry order, cancel, far deadlines") {
    std::uint64_t now = 1'000'000;
    TimerWheel wheel(8, now);
    wheel.arm(0, now + 100);
    wheel.arm(1, now + 50);
    wheel.arm(2, now + 100'000);  // beyond one lap of the wheel
    wheel.arm(3, now + 70);
    wheel.cancel(3);
    CHECK(wheel.size() == 3);

    std::vector<std::uint32_t> fired;
    auto collect = [&](std::uint32_t index) { fired.push_back(index); };
    wheel.expire(now + 40, collect);
    CHECK(fired.empty());
    CHECK(wheel.next_timeout_ms(now + 40, 1000) <= 20);
    wheel.expire(now + 60, collect);
    CHECK(fired == std::vector<std::uint32_t>{1});
    wheel.expire(now + 200, collect);
    CHECK(fired == std::vector<std::uint32_t>{1, 0});
    for (std::uint64_t t = now + 200; t < now + 99'000; t += 5000) wheel.expire(t, collect);
    CHECK(fired.size() == 2);
    wheel.expire(now + 100'001, collect);
    CHECK(fired == std::vector<std::uint32_t>{1, 0, 2});
    CHECK(wheel.size() == 0);
    CHECK(wheel.next_timeout_ms(now + 100'001, 1000) == 1000);

    // Re-arming moves an entry; a past deadline fires on the next expire.
    wheel.arm(4, now + 200'000);
    wheel.arm(4, now + 100'000);
    wheel.expire(now + 100'002, collect);
    CHECK(fired.back() == 4);
}
