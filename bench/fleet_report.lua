-- wrk script for bench/fleet.py: reports from many devices, round robin over a file of "path<TAB>token"
-- lines (BENCH_DEVICES), so the server looks up a different device (token, session, throttle) per request.
-- Every reply must be a success ('"code":0,'); done() prints BENCH_RESULT as bench/wrk_request.lua does.

local devices = {}
for line in io.lines(os.getenv("BENCH_DEVICES")) do
  local path, token = line:match("^([^\t]+)\t(.+)$")
  if path then
    devices[#devices + 1] = {path, token}
  end
end
local body = os.getenv("BENCH_BODY") or "{}"
local next_device = 1

good = 0
bad = 0

function init(args)
  next_device = (offset or 1)
end

function request()
  local d = devices[next_device]
  next_device = next_device % #devices + 1
  return wrk.format("POST", d[1], {["password"] = d[2], ["Content-Type"] = "application/octet-stream"}, body)
end

function response(status, headers, reply)
  if status == 200 and reply and reply:find('"code":0,', 1, true) then
    good = good + 1
  else
    bad = bad + 1
  end
end

local threads = {}

function setup(thread)
  thread:set("offset", math.random(1, #devices))
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local g, b = 0, 0
  for _, t in ipairs(threads) do
    g = g + t:get("good")
    b = b + t:get("bad")
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"good":%d,"bad":%d,"seconds":%.6f,"p50_us":%d,"p99_us":%d,"errors":%d}\n',
    summary.requests, g, b, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
      + summary.errors.timeout))
end
