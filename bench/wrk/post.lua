-- wrk script for scripts/benchmark: POST {"increment": 1} as application/json.
--
-- With IDEMPOTENCY_KEYS=<run id> in the environment, every request carries a fresh
-- Idempotency-Key (the counter's real request); without it, wrk sends one prebuilt request
-- over and over (no Lua per request).
-- Every answer whose status is not 200 is counted; done() prints one line, "WRK_RESULT {json}",
-- that the benchmark reads (and fails the round on any non-200 or socket error).

wrk.method = "POST"
wrk.body = '{"increment": 1}'
wrk.headers["Content-Type"] = "application/json"

local run_id = os.getenv("IDEMPOTENCY_KEYS")
local threads = {}
non200 = 0 -- global: done() reads it from each thread with thread:get

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

if run_id then
  local sent = 0
  function request()
    sent = sent + 1
    local key = run_id .. "-" .. thread_id .. "-" .. sent
    -- wrk.format uses only the headers it is given: repeat the Content-Type.
    return wrk.format(nil, nil, { ["Content-Type"] = "application/json", ["Idempotency-Key"] = key })
  end
end

function response(status, _headers, _body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, _requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "non200": %d, "connect": %d, '
      .. '"read": %d, "write": %d, "timeout": %d, "status_errors": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
