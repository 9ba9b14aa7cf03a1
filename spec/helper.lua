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

-- The command that runs this interpreter, from arg's negative indices
-- (lua5.4 puts itself at -1; `tand run` puts the program and "run"), for
-- specs that start other processes.
function helper.interpreter()
  local parts, i = {}, -1
  while arg and arg[i] do
    table.insert(parts, 1, arg[i])
    i = i - 1
  end
  return #parts > 0 and table.concat(parts, " ") or "lua5.4"
end

return helper
