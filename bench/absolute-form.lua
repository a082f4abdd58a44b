-- Makes wrk send what a client configured to use a proxy sends: the
-- absolute-form request line ("GET http://origin/path HTTP/1.1") and the
-- origin's Host header. The origin comes from BENCH_ORIGIN (host:port).
local origin = os.getenv("BENCH_ORIGIN")
wrk.path = "http://" .. origin .. wrk.path
wrk.headers["Host"] = origin
