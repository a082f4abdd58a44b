// PROXY protocol header parser: no input crashes or reads past its end
// (ASan); a verdict reached on a prefix holds for the whole input; a header
// accepted is no longer than the input, and its addresses are IPv4 or IPv6
// with the family's length.
#include "cproxy/proxy_protocol.hpp"
#include "fuzz_input.hpp"

using namespace cproxy;

namespace {

bool well_formed(const SocketAddress& address) noexcept {
    if (address.family() == AF_INET) return address.length == sizeof(sockaddr_in);
    if (address.family() == AF_INET6) return address.length == sizeof(sockaddr_in6);
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [bytes, split] = fuzz::split_input(data, size);
    proxy_protocol::Result whole = proxy_protocol::parse(bytes);
    proxy_protocol::Result prefix = proxy_protocol::parse(bytes.substr(0, split));
    if (prefix.status != proxy_protocol::Status::Partial) {
        fuzz::require(prefix.status == whole.status);
        fuzz::require(prefix.header.length == whole.header.length);
    }
    if (whole.status == proxy_protocol::Status::Error) fuzz::require(whole.error != nullptr);
    if (whole.status != proxy_protocol::Status::Done) return 0;
    fuzz::require(whole.header.length > 0 && whole.header.length <= bytes.size());
    fuzz::require(whole.header.length <= proxy_protocol::max_header);
    if (whole.header.has_addresses) {
        fuzz::require(well_formed(whole.header.source) && well_formed(whole.header.destination));
        fuzz::require(whole.header.source.family() == whole.header.destination.family());
    }
    return 0;
}
