-- scripts/bench_lua.lua - calls/s through the Lua API, in one run:
--   lua_next     m:next("me") on the counter machine
--   lua_deluxe   queue_new_number + serve_next_queued_number, built-in
--   lua_vip      the same calls through the VIP example policy
--   lua_vip_call m:call("queue_vip") + serve through the VIP policy
--   lua_inflight one thread keeping 64 calls ("next", "me") in flight on
--                the counter through a request set (set:call, set:wait)
--   lua_vip_call m:call("queue_vip") + serve_next_queued_number, VIP
-- N tand.spawn threads call one machine in a loop for a fixed time each;
-- one call in 16 is timed (its latency kept), the others only counted.
-- Usage: scripts/lua scripts/bench_lua.lua [ms] [threads...]
-- (ms: the time of one phase over its rounds; BENCH_ROUNDS in the
-- environment sets the rounds, 3 by default; scripts/bench sets 1 and
-- interleaves its own rounds, quiet and with a busy neighbour.)
local tand = require "tand"

local ms = tonumber(arg[1]) or 2000
local counts = {}
for i = 2, #arg do counts[#counts + 1] = tonumber(arg[i]) end
if #counts == 0 then counts = { 1, 16 } end

local function client(m, kind, until_ms)
  local tand = require "tand"
  local n, lat = 0, {}
  local per = kind == "lua_next" and 1 or 2 -- calls per turn
  while tand.now() < until_ms do
    for i = 1, 32 do
      local t0 = (i == 1 or i == 17) and tand.now()
      if kind == "lua_next" then
        assert(m:next("me"))
      elseif kind == "lua_vip_call" then
        assert(m:call("queue_vip"))
        m:serve_next_queued_number()
      else
        assert(m:queue_new_number())
        m:serve_next_queued_number() -- another thread may have served it
      end
      n = n + per
      if t0 then lat[#lat + 1] = (tand.now() - t0) * 1000 / per end
    end
  end
  return n, lat
end

-- One thread, `depth` calls in flight: each reply taken sends the next.
-- One call in 16 is timed from its send to its reply.
local function inflight(m, depth, until_ms)
  local tand = require "tand"
  local set = tand.requests()
  local sent_at, n, lat = {}, 0, {}
  local function send()
    local id = assert(set:call(m, "next", "me"))
    if id % 16 == 0 then sent_at[id] = tand.now() end
  end
  for _ = 1, depth do send() end
  while tand.now() < until_ms do
    local id, v = set:wait()
    assert(v, "a call failed")
    n = n + 1
    if sent_at[id] then
      lat[#lat + 1] = (tand.now() - sent_at[id]) * 1000
      sent_at[id] = nil
    end
    send()
  end
  while set:count() > 0 do set:wait() end
  set:close()
  return n, lat
end

local function machine(kind)
  if kind == "lua_next" or kind == "lua_inflight" then
    return assert(tand.start(0))
  end
  local opts = { min_number = 1, max_number = math.maxinteger }
  if kind == "lua_vip" or kind == "lua_vip_call" then
    package.path = "./examples/?.lua;" .. package.path
    opts.policy = "policies.vip"
  end
  return assert(tand.start(opts))
end

-- Each (kind, threads) runs ROUNDS times, interleaved, and the median
-- round is reported: the VM's speed drifts between phases (see
-- bench_engine.c), and interleaving keeps the kinds' ratios fair.
local ROUNDS = math.max(1, math.tointeger(tonumber(os.getenv("BENCH_ROUNDS") or "")) or 3)

local function measure(kind, threads, length)
  local m = machine(kind)
  local t0 = tand.now()
  local ts = {}
  if kind == "lua_inflight" then -- one thread, `threads` calls in flight
    ts[1] = tand.spawn(inflight, m, threads, t0 + length)
    threads = 1
  else
    for i = 1, threads do ts[i] = tand.spawn(client, m, kind, t0 + length) end
  end
  local total, lat = 0, {}
  for i = 1, threads do
    local n, l = assert(ts[i]:join(math.ceil(length) + 60000))
    total = total + n
    for _, v in ipairs(l) do lat[#lat + 1] = v end
  end
  local elapsed = (tand.now() - t0) / 1000
  table.sort(lat)
  m:stop()
  return { rate = total / elapsed, p50 = lat[#lat // 2 + 1],
           p99 = lat[math.floor(#lat * 0.99) + 1] }
end

local kinds = { "lua_next", "lua_deluxe", "lua_vip", "lua_vip_call",
                "lua_inflight" }
local function counts_of(kind)
  return kind == "lua_inflight" and { 64 } or counts
end
local got = {}
for _ = 1, ROUNDS do
  for _, kind in ipairs(kinds) do
    for _, threads in ipairs(counts_of(kind)) do
      local key = kind .. "/" .. threads
      got[key] = got[key] or {}
      table.insert(got[key], measure(kind, threads, ms / ROUNDS))
    end
  end
end

print("kind          thr       per_sec    p50_us    p99_us")
for _, kind in ipairs(kinds) do
  for _, threads in ipairs(counts_of(kind)) do
    local r = got[kind .. "/" .. threads]
    table.sort(r, function(a, b) return a.rate < b.rate end)
    local m = r[(#r + 1) // 2]
    print(("%-12s  %3d  %12.0f  %9.2f  %9.2f"):format(kind, threads,
          m.rate, m.p50, m.p99))
  end
end
