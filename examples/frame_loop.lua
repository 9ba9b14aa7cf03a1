-- examples/frame_loop.lua - a game's frame loop that asks servers without
-- missing a frame.
--
-- Each frame polls a request set for the answers that came in, sends new
-- questions now and then, and draws (here: sleeps 4 ms). A slow server
-- answers in 30 ms, meanwhile the frames go on. Run by the tests (it fails
-- if a frame's asking and taking waited for an answer):
--   scripts/lua examples/frame_loop.lua
local tand = require "tand"

local deli = assert(tand.start{ min_number = 1, max_number = 1000,
  policy = function()
    return { handle_call = function(request, from, state, machine)
      require("tand").sleep(30) -- a slow answer
      return machine:queue_new_number()
    end }
  end })

local set = tand.requests()
local frames, answers, longest = 0, {}, 0
while #answers < 10 do
  local t0 = tand.now()
  -- 1. take what came in, never waiting
  local id, number = set:poll()
  while id do
    answers[#answers + 1] = number
    id, number = set:poll()
  end
  -- 2. ask again every 20 frames, at most 3 questions in flight
  if frames % 20 == 0 and set:count() < 3 then
    assert(set:call(deli, "take_a_number"))
  end
  longest = math.max(longest, tand.now() - t0)
  -- 3. draw
  tand.sleep(4)
  frames = frames + 1
end

print(("%d numbers over %d frames; asking and taking took %.2f ms at most"):format(
  #answers, frames, longest))
for i, n in ipairs(answers) do assert(n == i, "numbers in order") end
-- a frame that had waited for a 30 ms answer would have spent 30 ms in
-- steps 1 and 2
assert(longest < 25, "a frame waited for a server")
set:close()
deli:stop()
