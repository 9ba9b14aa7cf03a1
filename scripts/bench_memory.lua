-- scripts/bench_memory.lua [count] - resident bytes per idle policy
-- server (the VIP example) and how fast they start.
local tand = require "tand"
package.path = "./examples/?.lua;" .. package.path

local count = tonumber(arg[1]) or 10000

local function resident()
  local f = assert(io.open("/proc/self/statm"))
  local _, rss = f:read("n", "n")
  f:close()
  return rss * 4096
end

collectgarbage(); collectgarbage()
local before = resident()
local t0 = tand.now()
local all = {}
for i = 1, count do
  all[i] = assert(tand.start{ min_number = 1, max_number = 99,
                              policy = "policies.vip" })
end
local elapsed = (tand.now() - t0) / 1000
collectgarbage(); collectgarbage()
local after = resident()
print(("policy   %9d  %16.0f  %8.1f  %14.0f"):format(count,
      (after - before) / count, (after - before) / 1048576,
      count / elapsed))
for i = 1, count do all[i]:stop() end
