-- scripts/bench_lua.lua - calls/s through the Lua API: N tand.spawn
-- threads calling m:next("me") on one counter machine for a fixed time.
-- Usage: scripts/lua scripts/bench_lua.lua [ms] [threads...]
local tand = require "tand"

local ms = tonumber(arg[1]) or 2000
local counts = {}
for i = 2, #arg do counts[#counts + 1] = tonumber(arg[i]) end
if #counts == 0 then counts = { 1, 16 } end

local function client(m, until_ms)
  local tand = require "tand"
  local n, lat = 0, {}
  while tand.now() < until_ms do
    for _ = 1, 64 do
      local t0 = tand.now()
      assert(m:next("me"))
      n = n + 1
      if n % 16 == 0 then lat[#lat + 1] = tand.now() - t0 end
    end
  end
  return n, lat
end

print("kind      thr       per_sec    p50_us    p99_us")
for _, threads in ipairs(counts) do
  local m = assert(tand.start(0))
  local t0 = tand.now()
  local stop_at = t0 + ms
  local ts = {}
  for i = 1, threads do ts[i] = tand.spawn(client, m, stop_at) end
  local total, lat = 0, {}
  for i = 1, threads do
    local n, l = assert(ts[i]:join(ms + 60000))
    total = total + n
    for _, v in ipairs(l) do lat[#lat + 1] = v end
  end
  local elapsed = (tand.now() - t0) / 1000
  table.sort(lat)
  print(("lua_next  %3d  %12.0f  %9.2f  %9.2f"):format(threads,
        total / elapsed, lat[#lat // 2 + 1] * 1000,
        lat[math.floor(#lat * 0.99) + 1] * 1000))
  m:stop()
end
