-- wrk script for bench/soak.py: Alink property posts from many devices, paced, every reply checked.
--   SOAK_DEVICES_FILE: one device a line, "<topic path>\t<token>" (the requests cycle through them)
--   SOAK_DELAY_MS: the pause before each request on a connection (fractional: dithered between the two
--   whole milliseconds around it, since wrk takes whole ones), which sets the rate: soak.py adjusts it.
-- done() prints SOAK_RESULT (JSON): requests, good/bad replies, socket errors and latency percentiles.

local devices = {}
for line in io.lines(os.getenv("SOAK_DEVICES_FILE")) do
  local path, token = line:match("^(%S+)\t(%S+)$")
  if path then
    table.insert(devices, {path, token})
  end
end
local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "0")
local whole, fraction = math.floor(delay_ms), delay_ms - math.floor(delay_ms)

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
  table.insert(threads, thread)
end

good = 0
bad = 0
sample = ""
local n = 0

function init(args)
  n = offset or 0
end

function request()
  n = n + 1
  local device = devices[(n % #devices) + 1]
  local body = string.format('{"id":"%d","params":{"temperature":%d,"humidity":%d},"method":"thing.event.property.post"}',
    n, 15 + n % 20, 40 + n % 50)
  return wrk.format("POST", device[1], {["password"] = device[2], ["Content-Type"] = "application/octet-stream"}, body)
end

function delay()
  if fraction > 0 and math.random() < fraction then
    return whole + 1
  end
  return whole
end

function response(status, headers, body)
  if status == 200 and body and body:find('"code":0,', 1, true) then
    good = good + 1
  else
    bad = bad + 1
    if sample == "" then
      sample = tostring(status) .. " " .. tostring(body):sub(1, 200)
    end
  end
end

function done(summary, latency, requests)
  local total_good, total_bad, first_bad = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_good = total_good + (thread:get("good") or 0)
    total_bad = total_bad + (thread:get("bad") or 0)
    if first_bad == "" then
      first_bad = thread:get("sample") or ""
    end
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK_RESULT {"duration_us":%d,"requests":%d,"good":%d,"bad":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"sample":"%s"}\n',
    summary.duration, summary.requests, total_good, total_bad,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    first_bad:gsub('[%c"\\]', " ")))
end
