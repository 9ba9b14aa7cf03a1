-- spec/helper.lua - shared by the specs: polling with a deadline.
local tand = require "tand"

local helper = {}

-- Polls fn() every 5 ms until it returns true or ms pass; returns the
-- last result, so a spec asserts it.
function helper.wait_for(fn, ms)
  local deadline = tand.now() + (ms or 5000)
  repeat
    if fn() then return true end
    tand.sleep(5)
  until tand.now() > deadline
  return fn() and true or false
end

return helper
