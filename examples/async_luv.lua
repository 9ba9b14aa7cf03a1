-- examples/async_luv.lua - tand requests inside a luv (libuv) loop.
--
-- Three slow servers are asked twelve questions through one request set;
-- the set's descriptor sits in the loop as a poll handle, so replies are
-- taken as they come while a timer keeps ticking. Run by the tests (it
-- fails if the timer stopped ticking while the requests were in flight):
--   scripts/lua examples/async_luv.lua    (needs Debian's lua-luv)
local uv = require "luv"
local tand = require "tand"

-- A server that takes 60 ms per answer (a stand-in for real work).
local function slow_server(n)
  return assert(tand.start{ min_number = 1, max_number = 1000, policy = function()
    return { handle_call = function(request, from, state, machine)
      require("tand").sleep(60)
      return request[2] * request[2]
    end }
  end, name = "slow" .. n })
end

local servers = { slow_server(1), slow_server(2), slow_server(3) }
local set = tand.requests()
local asked = {}
for i = 1, 12 do
  local id = assert(set:call(servers[i % 3 + 1], "square", i))
  asked[id] = i
end

local ticks, answers = 0, 0
local timer = uv.new_timer()
timer:start(5, 5, function() ticks = ticks + 1 end)

local poll = uv.new_poll(set:fd())
local t0 = uv.now()
poll:start("r", function(err)
  assert(not err, err)
  local id, square = set:poll()
  while id do -- every reply that is in
    assert(square == asked[id] ^ 2, "a wrong answer")
    answers = answers + 1
    id, square = set:poll()
  end
  if set:count() == 0 then -- all in: let the loop end
    poll:stop(); poll:close()
    timer:stop(); timer:close()
  end
end)
uv.run()

local ms = uv.now() - t0
print(("%d answers in %d ms; the timer ticked %d times meanwhile"):format(
  answers, ms, ticks))
assert(answers == 12)
-- 12 answers of 60 ms on the runtime's workers take >= 120 ms: a loop
-- that was never blocked ticked all along (every 5 ms)
assert(ticks >= ms // 5 // 2, "the loop stopped ticking during the wait")
set:close()
for _, s in ipairs(servers) do s:stop() end
