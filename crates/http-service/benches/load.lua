-- The wrk script of the load bench (benches/load.rs), configured through the environment:
--   LOAD_IDS_FILE  a file of user ids, one a line
--   LOAD_MODE      "read": GET /users/{id}, cycling over every id, each thread from its own start;
--                  "check-in": each thread owns a slice of the ids and walks it in a cycle,
--                  checking a user in, and out on its next turn, from the answers it got: a user
--                  with a request in flight is skipped until the answer names them, so no two
--                  requests in flight share a user, however late an answer comes
--   LOAD_THREADS   wrk's -t, to cut the slices
-- done() prints one line, "load-bench key=value ...", that the bench parses; `statuses` lists
-- the failed answers' statuses (check-in mode only).

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  local ids = {}
  for line in io.lines(os.getenv("LOAD_IDS_FILE")) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  mode = os.getenv("LOAD_MODE")
  local thread_count = tonumber(os.getenv("LOAD_THREADS"))
  if mode == "check-in" then
    local size = math.floor(#ids / thread_count)
    users = {}
    for i = 1, size do
      users[i] = ids[thread_index * size + i]
    end
    cursor = 1
    busy = {}
    checked_in = {}
  elseif mode == "read" then
    users = ids
    cursor = math.floor(thread_index * #ids / thread_count) + 1
  else
    error("LOAD_MODE must be read or check-in, not " .. tostring(mode))
  end
  failed = ""
  -- wrk calls request() once on its first thread before the run, to check the request
  -- (script_verify_request), and never sends it: that call must not take a user's turn.
  unsent_check = thread_index == 0
end

function request()
  if unsent_check then
    unsent_check = false
    return wrk.format("GET", "/healthz")
  end
  if mode == "read" then
    local user = users[cursor]
    cursor = cursor % #users + 1
    return wrk.format("GET", "/users/" .. user)
  end
  for _ = 1, #users do
    local user = users[cursor]
    cursor = cursor % #users + 1
    if not busy[user] then
      busy[user] = true
      if checked_in[user] then
        return wrk.format("POST", "/users/" .. user .. "/check-out")
      end
      return wrk.format("POST", "/users/" .. user .. "/check-in")
    end
  end
  -- Every user of the slice waits for an answer: only after as many failed ones, which the
  -- bench reports anyway.
  return wrk.format("GET", "/healthz")
end

if os.getenv("LOAD_MODE") == "check-in" then
  -- 201: the user is checked in; 200: out (or /healthz). A failed answer leaves its user busy.
  function response(status, headers, body)
    if status >= 300 then
      failed = failed .. "," .. status
      return
    end
    local user = string.match(body, '"user_id":"([^"]+)"')
    if user then
      busy[user] = nil
      checked_in[user] = status == 201
    end
  end
end

function done(summary, latency, requests)
  local statuses = ""
  for _, thread in ipairs(threads) do
    statuses = statuses .. thread:get("failed")
  end
  if statuses == "" then
    statuses = "-"
  else
    statuses = string.sub(statuses, 2)
  end
  local errors = summary.errors
  io.write(string.format(
    "load-bench requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f connect=%d read=%d write=%d status=%d "
      .. "timeout=%d statuses=%s\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout, statuses))
end
