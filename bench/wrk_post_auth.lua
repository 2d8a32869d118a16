-- wrk script: POST the JSON body in $BODY_FILE to the URL given on the command line, with an
-- optional `Authorization: Bearer $AUTH_BEARER` header, and print one machine-readable summary
-- line starting with "WRKJSON ".
--
-- The same as the peer kit's wrk_post.lua (shared/bench/peers/wrk_post.lua) plus the header. The
-- headers are set once when wrk starts, so the request is built once and no Lua runs per
-- request: the load generator costs the same with or without the key.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
local bearer = os.getenv("AUTH_BEARER")
if bearer ~= nil and bearer ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. bearer
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,' ..
    '"lat_p90_us":%d,"lat_p99_us":%d,"lat_p999_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
