-- examples/policies/one_per_caller.lua - one ticket per caller.
--
-- m:call("take", who) gives `who` a number; asking again while that
-- number is still queued gives the same number back instead of a second
-- one. Serving a number frees its holder to take a new one.
return function()
  local P = {}

  -- for `tand check`: take(who) may give a caller's number again
  P.ops = { take = { kind = "other", args = { "caller" } } }

  function P.init()
    return { by_caller = {}, by_number = {} }
  end

  local function forget(state, n)
    local who = state.by_number[n]
    if who ~= nil then
      state.by_number[n] = nil
      state.by_caller[who] = nil
    end
  end

  function P.handle_call(request, from, state, machine)
    local op = request[1]
    if op == "take" then
      local who = request[2]
      if who == nil then return nil, "unknown_request", "take needs a caller" end
      local held = state.by_caller[who]
      if held then return held end
      local n, err, detail = machine:queue_new_number()
      if n then
        state.by_caller[who] = n
        state.by_number[n] = who
      end
      return n, err, detail
    elseif op == "serve_next_queued_number" then
      local n, err, detail = machine:default(request)
      if n then forget(state, n) end
      return n, err, detail
    elseif op == "reset_state" then
      state.by_caller, state.by_number = {}, {}
    end
    return machine:default(request)
  end

  function P.handle_cast(request, state, machine)
    if request[1] == "reset_state" then
      state.by_caller, state.by_number = {}, {}
    end
    machine:default(request)
  end

  return P
end
