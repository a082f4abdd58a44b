// The stats endpoint's renderings: Prometheus text and the seed's JSON.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <sstream>
#include <string>

#include "cproxy/metrics.hpp"

using namespace cproxy;

namespace {

WorkerStats sample(std::uint32_t worker, std::uint64_t base) {
    WorkerStats stats;
    stats.worker = worker;
    stats.connections_accepted = base + 1;
    stats.requests[1] = base + 10;  // 2xx
    stats.requests[3] = base + 2;   // 4xx
    stats.requests[4] = 1;          // 5xx
    stats.requests_unanswered = 3;
    stats.bytes_in = 1000;
    stats.bytes_out = 5000;
    stats.bytes_spliced = 4000;
    stats.tunnels_active = 2;
    return stats;
}

}  // namespace

TEST_CASE("metrics: Prometheus text has one TYPE per family and a worker label on every sample") {
    WorkerStats workers[] = {sample(0, 0), sample(1, 100)};
    char out[16384];
    std::size_t length = render_prometheus(workers, 2, out, sizeof out);
    REQUIRE(length > 0);
    std::istringstream lines(std::string(out, length));
    std::set<std::string> typed;
    std::map<std::string, std::string> values;
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind("# TYPE ", 0) == 0) {
            std::string family = line.substr(7, line.find(' ', 7) - 7);
            CHECK(typed.insert(family).second);  // never typed twice
            continue;
        }
        if (line.rfind("# HELP ", 0) == 0) continue;
        auto brace = line.find('{');
        REQUIRE(brace != std::string::npos);
        CHECK(typed.count(line.substr(0, brace)) == 1);  // its TYPE came first
        CHECK(line.find("worker=\"") != std::string::npos);
        auto space = line.rfind(' ');
        values[line.substr(0, space)] = line.substr(space + 1);
    }
    CHECK(values["cproxy_requests_total{worker=\"0\",code=\"2xx\"}"] == "10");
    CHECK(values["cproxy_requests_total{worker=\"1\",code=\"2xx\"}"] == "110");
    CHECK(values["cproxy_requests_total{worker=\"1\",code=\"1xx\"}"] == "0");
    CHECK(values["cproxy_connections_accepted_total{worker=\"1\"}"] == "101");
    CHECK(values["cproxy_bytes_total{worker=\"0\",direction=\"out\"}"] == "5000");
    CHECK(values["cproxy_relayed_bytes_total{worker=\"0\",method=\"splice\"}"] == "4000");
    CHECK(values["cproxy_relayed_bytes_total{worker=\"0\",method=\"copy\"}"] == "2000");
    CHECK(values["cproxy_tunnels_active{worker=\"1\"}"] == "2");
    for (const char* family : {"cproxy_connections_refused_total", "cproxy_connections_open", "cproxy_tunnels_total",
                               "cproxy_buffers_in_use", "cproxy_pipes_in_use", "cproxy_upstream_idle_connections",
                               "cproxy_upstream_reused_total", "cproxy_dns_cache_hits_total",
                               "cproxy_dns_cache_misses_total", "cproxy_dns_lookups_active"})
        CHECK(typed.count(family) == 1);
}

TEST_CASE("metrics: JSON carries the seed's keys, summed over the workers") {
    WorkerStats workers[] = {sample(0, 0), sample(1, 100)};
    char out[16384];
    std::size_t length = render_json(workers, 2, out, sizeof out);
    REQUIRE(length > 0);
    std::string json(out, length);
    CHECK(json.rfind("{\"bandwidth_usage\":12000,", 0) == 0);
    // 2xx: 10 + 110 succeeded; 4xx 2 + 102, 5xx 1 + 1, unanswered 3 + 3 failed.
    CHECK(json.find("\"total_requests\":232,\"successful_visits\":120,\"failed_visits\":112") != std::string::npos);
    CHECK(json.find("{\"worker\":1,\"requests\":{\"1xx\":0,\"2xx\":110,") != std::string::npos);
    CHECK(json.find("\"relayed_bytes_copy\":2000") != std::string::npos);
    CHECK(json.substr(json.size() - 4) == "}]}\n");
}

TEST_CASE("metrics: output that does not fit gives 0, never a cut text") {
    WorkerStats worker = sample(0, 0);
    char out[256];
    CHECK(render_prometheus(&worker, 1, out, sizeof out) == 0);
    CHECK(render_json(&worker, 1, out, sizeof out) == 0);
}
