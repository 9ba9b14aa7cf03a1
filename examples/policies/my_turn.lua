-- examples/policies/my_turn.lua - "tell me when it's my turn".
--
-- A customer takes a number, then m:call("wait", n) blocks until the
-- clerk serves n: the reply is deferred (tand.noreply) and sent with
-- machine:reply when serve_next_queued_number hands n out. A customer
-- whose call times out first gets "timeout"; the late reply is dropped.
return function()
  local tand = require "tand"
  local P = {}

  -- for `tand check`: wait is known but not called (its caller waits
  -- until another serves its number)
  P.ops = { wait = { skip = true } }

  function P.init()
    return { waiting = {} } -- number -> the callers waiting for it
  end

  local function wake(state, machine, n)
    local list = state.waiting[n]
    state.waiting[n] = nil
    for _, from in ipairs(list or {}) do
      machine:reply(from, "your turn", n)
    end
  end

  function P.handle_call(request, from, state, machine)
    local op = request[1]
    if op == "wait" then
      local n = request[2]
      local queued = false
      for _, q in ipairs(machine:queue()) do
        if q == n then queued = true break end
      end
      if not queued then
        return nil, "priority_number_not_found", "not queued: " .. tostring(n)
      end
      local list = state.waiting[n] or {}
      list[#list + 1] = from
      state.waiting[n] = list
      return tand.noreply
    elseif op == "serve_next_queued_number" then
      local n, err, detail = machine:default(request)
      if n then wake(state, machine, n) end
      return n, err, detail
    end
    return machine:default(request)
  end

  return P
end
