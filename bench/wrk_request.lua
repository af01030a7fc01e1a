-- wrk script for bench/run.py: one fixed request per row, and a check that every reply is a success.
-- The request comes from the environment so one script serves every row:
--   BENCH_METHOD, BENCH_HEADERS ("Name: value" lines), BENCH_BODY_FILE (raw body), and the row's success
--   check: BENCH_EXPECT (a substring every good reply body contains; empty = status 200 is enough) and
--   BENCH_REJECT (a substring no good reply body contains, e.g. IoTDA's "refused" in a 200 reply; empty = none).
-- done() prints one machine-readable line (BENCH_RESULT, JSON) and BENCH_SAMPLE (the first bad reply).
-- Why count bad replies here: a benchmark of error replies is worthless, and wrk itself counts only
-- non-2xx/3xx statuses, while thingport answers Alibaba-dialect errors with HTTP 200 and a non-zero "code",
-- and an IoTDA report the model partly refused with 200 and a "refused" list.

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY_FILE") or ""
if body_file ~= "" then
  wrk.body = read_file(body_file)
end
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\r\n]+") do
  local name, value = line:match("^([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end
-- BENCH_VARIANTS ("path<TAB>Name: value" lines, e.g. one per device with its token): requests take them in
-- turn, each its own path and that one header, so a row's load is spread over many devices.
local variants = {}
for line in (os.getenv("BENCH_VARIANTS") or ""):gmatch("[^\r\n]+") do
  local path, name, value = line:match("^([^\t]+)\t([^:]+):%s*(.-)%s*$")
  if path then
    table.insert(variants, {path = path, name = name, value = value})
  end
end
if #variants > 0 then
  local turn = 0
  request = function()
    turn = turn % #variants + 1
    local v = variants[turn]
    wrk.headers[v.name] = v.value
    return wrk.format(nil, v.path)
  end
end
local expect = os.getenv("BENCH_EXPECT") or ""
local reject = os.getenv("BENCH_REJECT") or ""

-- per-thread counters (globals, so the main state can read them with thread:get)
good = 0
bad = 0
sample = ""

function response(status, headers, body)
  if status == 200 and (expect == "" or (body and body:find(expect, 1, true)))
      and (reject == "" or not (body and body:find(reject, 1, true))) then
    good = good + 1
  else
    bad = bad + 1
    if sample == "" then
      sample = tostring(status) .. " " .. tostring(body):sub(1, 200)
    end
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local total_good, total_bad, first_bad = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_good = total_good + (thread:get("good") or 0)
    total_bad = total_bad + (thread:get("bad") or 0)
    local s = thread:get("sample") or ""
    if first_bad == "" then
      first_bad = s
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"good":%d,"bad":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, total_good, total_bad,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
  io.write("BENCH_SAMPLE " .. first_bad:gsub("%c", " ") .. "\n")
end
