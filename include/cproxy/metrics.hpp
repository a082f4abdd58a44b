// The stats endpoint's two renderings of the workers' counters: Prometheus
// text exposition (GET /metrics) and JSON carrying the seed proxy's keys
// (GET /stats). Pure functions over a snapshot, so they are unit-tested and
// the request path never pays for them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cproxy {

// What one worker reports. Counters only grow; gauges are the moment's.
struct WorkerStats {
    std::uint64_t worker = 0;  // 64 bits like the rest: StatsBoard copies the struct as words
    std::uint64_t connections_accepted = 0;
    std::uint64_t connections_refused = 0;
    std::uint64_t connections_open = 0;
    std::uint64_t requests[5] = {};   // by status class: 1xx .. 5xx
    std::uint64_t requests_unanswered = 0;  // ended before any status was sent
    std::uint64_t tunnels_active = 0;
    std::uint64_t tunnels_total = 0;
    std::uint64_t bytes_in = 0;       // from clients
    std::uint64_t bytes_out = 0;      // to clients
    std::uint64_t bytes_spliced = 0;  // of those, relayed by splice(2) rather than copied
    std::uint64_t buffers_in_use = 0;
    std::uint64_t pipes_in_use = 0;
    std::uint64_t upstream_idle_connections = 0;
    std::uint64_t upstream_reused = 0;
    std::uint64_t upstream_waiting = 0;  // requests queued under upstream_max_connections
    std::uint64_t dns_cache_hits = 0;
    std::uint64_t dns_cache_misses = 0;
    std::uint64_t dns_lookups_active = 0;
    std::uint64_t parent_requests = 0;      // requests and tunnels sent through a parent proxy
    std::uint64_t parents_marked_down = 0;  // times a parent that failed was set aside
    std::uint64_t parents_down = 0;         // parents this worker holds down now
};

// Each writes at most `capacity` bytes to `out` and returns the length, or 0
// when the text does not fit.
std::size_t render_prometheus(const WorkerStats* workers, std::size_t count, char* out, std::size_t capacity) noexcept;
std::size_t render_json(const WorkerStats* workers, std::size_t count, char* out, std::size_t capacity) noexcept;

}  // namespace cproxy
